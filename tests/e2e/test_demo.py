"""`p2pbak demo` end to end: real processes, a real backup and restore, and a clean stop."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import child_env, run_cli
from tests.support.grid import lines, summary

pytestmark = pytest.mark.slow


def test_demo_with_eight_peers_verifies_and_cleans_up() -> None:
    r = run_cli(["demo", "--peers", "8", "--json"], timeout=600)
    report = summary(r)
    assert report["verified"] is True and report["differences"] == []
    assert 1 <= report["k"] < report["n"] <= 8
    counts = report["fragments_per_peer"]
    assert len(counts) == 8
    assert sum(counts.values()) >= report["packs_added"] * (report["k"] + 1)
    assert report["files"] >= 25 and report["data_added"] > 0
    assert not Path(report["root"]).exists(), "the demo left its temporary folder"


def test_demo_keep_leaves_a_usable_grid_and_says_how_to_stop(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me\n")
    r = run_cli(["demo", "--peers", "3", "--path", str(tmp_path), "--keep", "--json"],
                timeout=300)
    report = summary(r)
    pids = [int(p) for p in re.findall(r"\d+", report["stop_command"].split("&&")[0])]
    try:
        assert report["verified"] is True and len(pids) == 5  # coordinator, 3 peers, the user's own
        env = {"P2PBAK_CONFIG": report["config"],
               "P2PBAK_PASSWORD_FILE": report["password_file"]}
        snaps = [m for m in lines(run_cli(["snapshots", "--json"], env=env).stdout)
                 if m["message_type"] == "snapshot"]
        assert [s["id"] for s in snaps] == [report["snapshot_id"]]
    finally:
        done = subprocess.run(report["stop_command"], shell=True, timeout=60)
    assert done.returncode == 0
    for pid in pids:
        _wait_gone(pid)
    assert not Path(report["root"]).exists()
    assert shlex.split(report["stop_command"])[0] == "kill"


def test_killing_the_demo_with_sigkill_leaves_nothing_running() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "p2pbak", "demo", "--peers", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=child_env())
    try:
        servers = _wait_servers(demo.pid, 4)  # the coordinator and 3 peers, all running
        children = _children(demo.pid)
    finally:
        demo.kill()  # SIGKILL: no handler, no finally of the demo runs
        demo.wait(30)
    assert demo.returncode == -signal.SIGKILL, "the demo ended before it was killed"
    assert set(servers) <= set(children)
    for pid in children:  # servers and any CLI it was running
        _wait_gone(pid, 300)


def _children(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat[1]) == parent:
                out.append(int(entry.name))
    return out


def _wait_servers(parent: int, count: int) -> list[int]:
    def servers() -> list[int]:
        found = []
        for pid in _children(parent):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if b"serve" in argv or b"run" in argv:
                found.append(pid)
        return found

    for _ in range(600):
        if len(found := servers()) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the demo did not start {count} servers: {servers()}")


def _wait_gone(pid: int, tries: int = 100) -> None:
    for _ in range(tries):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state == "Z":  # exited, waiting to be reaped by its new parent
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still runs after it was told to stop")
