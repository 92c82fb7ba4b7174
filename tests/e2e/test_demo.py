"""`p2pbak demo` end to end: real processes, a real backup and restore, and a clean stop."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import run_cli
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


def _wait_gone(pid: int) -> None:
    import time

    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state == "Z":  # exited, waiting to be reaped by its new parent
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still runs after the stop command")
