"""Repository locks across commands, as restic's: a restore (and a check) share the lock,
so two restores run together; prune and forget take it alone, so they never delete what a
running restore still needs: they refuse with exit 11, or wait with --retry-lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from p2pbak.errors import ExitCode
from p2pbak.localgrid.demo import restored_root
from p2pbak.localgrid.grid import Grid, child_env, wait_for
from tests.support.e2e_repair import query
from tests.support.grid import GridSpec, one_line_error, random_files, summary

GRID = GridSpec(4, heartbeat=0.5)
pytestmark = pytest.mark.slow


def _start(grid: Grid, config: Path, *args: str) -> subprocess.Popen[str]:
    env = child_env({"P2PBAK_PASSWORD_FILE": str(grid.password_file),
                     "P2PBAK_CACHE_DIR": str(grid.root / "cache"),
                     "P2PBAK_CONFIG": str(config)})
    return subprocess.Popen([sys.executable, "-m", "p2pbak", *args], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def _holders(grid: Grid) -> list[tuple[str, int]]:
    return query(grid, "SELECT command, exclusive FROM repo_locks")


def test_prune_waits_for_a_running_restore_and_restores_share(grid: Grid,
                                                              tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 4, 1024, seed=19)
    first = summary(grid.cli("backup", str(src), "--json", config=alice))["snapshot_id"]
    (src / "f0.bin").unlink()
    summary(grid.cli("backup", str(src), "--json", config=alice))
    # The peers are held still while the restore starts, so it cannot finish before the
    # test sees its lock: a restore of 4 KiB takes less time than one poll.
    peers = [p.process.popen.pid for p in grid.peers]
    _signal_all(peers, signal.SIGSTOP)
    restore = _start(grid, alice, "restore", first, "--target", str(tmp_path / "one"))
    try:
        try:
            wait_for(lambda: ("restore", 0) in _holders(grid), 60, "the restore took no lock")
            os.kill(restore.pid, signal.SIGSTOP)  # a restore in the middle of its work
        finally:
            _signal_all(peers, signal.SIGCONT)
        assert restore.poll() is None, "the restore ended before it could be held"
        for args in (("prune",), ("forget", first, "--prune")):  # f0.bin's packs would go
            r = grid.cli(*args, config=alice)
            assert r.returncode == int(ExitCode.LOCKED) == 11, r.stderr
            err = one_line_error(r)
            assert "restores right now" in err and "--retry-lock" in err
        # a second restore shares the lock with the first
        other = grid.cli("restore", "latest", "--target", str(tmp_path / "two"), "--json",
                         config=alice)
        assert summary(other)["files_restored"] == 3
        waiting = _start(grid, alice, "forget", first, "--prune", "--retry-lock", "5m",
                         "--json")
        wait_for(lambda: waiting.poll() is None and len(_holders(grid)) == 1, 30,
                 "the prune did not wait")
        os.kill(restore.pid, signal.SIGCONT)
        _, err_text = restore.communicate(timeout=120)
        assert restore.returncode == 0, err_text
        pruned, perr = waiting.communicate(timeout=120)
    finally:
        if restore.poll() is None:  # a failed assertion above: never leave it stopped
            os.kill(restore.pid, signal.SIGCONT)
            restore.kill()
    assert waiting.returncode == 0, perr
    assert '"packs_dropped": 0' not in pruned  # it ran after the restore, and freed f0's
    assert first not in grid.cli("snapshots", config=alice).stdout
    original = random_files(tmp_path / "orig", 4, 1024, seed=19)  # the same bytes again
    back = restored_root(tmp_path / "one", src)
    assert sorted(p.name for p in back.iterdir()) == sorted(p.name for p in original.iterdir())
    assert all((back / p.name).read_bytes() == p.read_bytes() for p in original.iterdir())
