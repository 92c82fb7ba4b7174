"""Ctrl-C in the middle of a real backup: exit 130, a line saying what was saved, and a
re-run that resumes (reuses the packs already uploaded) and restores byte-identical."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from p2pbak.datapath.archiver import FIRST_PACK_SIZE
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, child_env
from tests.support.grid import GridSpec, random_files, summary

pytestmark = pytest.mark.slow
GRID = GridSpec(4)
PACK = 16 * 1024 * 1024


def test_sigint_mid_backup_says_what_was_saved_and_a_rerun_resumes(
        grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 6, 12 * 1024, seed=19)  # 72 MiB: 6 packs
    env = child_env({"P2PBAK_CONFIG": str(alice),
                     "P2PBAK_PASSWORD_FILE": str(grid.password_file)})
    proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "backup", str(src), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:  # wait until a first pack is committed and indexed
            msg = json.loads(line)
            if msg["message_type"] == "status" and msg.get("packs_saved", 0) >= 1:
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "summary" not in rest
    error = json.loads(err.strip().splitlines()[-1])
    assert error["exit_code"] == 130 and error["fatal"] is True
    assert "pack(s)" in error["message"] and "were uploaded and indexed" in error["message"]
    assert "run the same backup again to resume" in error["message"]
    saved = int(error["message"].split("saved: ", 1)[1].split(" pack(s)")[0])
    assert saved >= 1
    again = summary(grid.cli("backup", str(src), "--json", config=alice))
    total = sum(p.stat().st_size for p in src.iterdir())
    # the re-run uploads only what the first run had not committed
    packed = sum(min(PACK, FIRST_PACK_SIZE << i) for i in range(saved))  # 4, 8, 16 MiB, ...
    assert again["data_added"] <= total - packed * 0.9
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=alice))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []


def test_sigint_early_exits_130_with_the_message(grid: Grid, tmp_path: Path) -> None:
    bob = grid.add_user("bob")
    src = random_files(tmp_path / "src", 3, 12 * 1024, seed=7)
    env = child_env({"P2PBAK_CONFIG": str(bob),
                     "P2PBAK_PASSWORD_FILE": str(grid.password_file)})
    proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "backup", str(src), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if json.loads(line).get("bytes_done", 0) > 0:
                proc.send_signal(signal.SIGINT)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "backup interrupted, no snapshot saved" in err
