"""`p2pbak backup` and the machine lock: the real command against a real second holder.

The coordinator in the config does not exist: a backup that gets the lock goes on to fail
with exit status 14 (unreachable), one that does not stops with 11 before any network.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pbak.config import Config, save
from p2pbak.errors import ExitCode
from tests.client.test_machine_lock import ROOT, locked_holder, release


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Config, list[str]]:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Config(path=tmp_path / "config.toml", coordinator=f"http://127.0.0.1:{port}",
                 user="alice", machine_id="m1", secret="s")
    save(cfg)
    (tmp_path / "pass").write_text("passphrase\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    args = ["backup", "--json", "--config", str(cfg.path), "--password-file",
            str(tmp_path / "pass"), str(tmp_path / "src")]
    return cfg, args


def backup(args: list[str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "p2pbak", *args, *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_line(stderr: str) -> dict[str, object]:
    lines = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
    assert lines, stderr
    return lines[-1]


def test_backup_while_locked_exits_11_at_once(machine: tuple[Config, list[str]]) -> None:
    cfg, args = machine
    holder = locked_holder(cfg.cache)
    try:
        proc = backup(args)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == ExitCode.LOCKED
        line = error_line(err)
        assert line["exit_code"] == 11 and line["fatal"] is True
        assert f"pid {holder.pid} on " in str(line["message"])
        assert "--retry-lock" in str(line["message"])
    finally:
        release(holder)


def test_backup_with_retry_lock_waits_then_runs(machine: tuple[Config, list[str]]) -> None:
    cfg, args = machine
    holder = locked_holder(cfg.cache)
    proc = backup(args, "--retry-lock", "30s")
    time.sleep(2)
    assert proc.poll() is None, "backup did not wait for the lock"
    assert release(holder)[0] == 0
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.UNREACHABLE, err  # it got past the lock
    assert "cannot reach the coordinator" in str(error_line(err)["message"])
