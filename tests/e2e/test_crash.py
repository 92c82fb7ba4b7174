"""A backup client SIGKILLed at several points, then run again to the end.

Uploads are slowed by the suppliers' download caps so the kills land mid-backup: once at
a random moment early in the upload, once right after the first pack is committed, once
right after the last pack is committed (before or after the snapshot, whichever comes).
After every kill, no snapshot listed is broken; the final run reuses every pack already
committed and indexed, its snapshot restores byte for byte and `check --read-data` is clean.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, child_env
from tests.support.e2e_repair import query
from tests.support.grid import lines, summary

pytestmark = pytest.mark.slow

FILES, FILE_MIB = 5, 8  # 40 MiB: four data packs (4, 8, 16, 12 MiB) and a tree pack
CAP = "4MB/s"  # each supplier's download cap


@pytest.fixture(scope="module")
def carol(grid: Grid) -> Path:
    config = grid.add_user("carol", machine="desk")
    for peer in grid.peers:
        r = grid.cli("supply", "set", "--download", CAP, "--json", config=peer.config)
        assert r.returncode == 0, r.stderr
    time.sleep(3)  # agents re-read their caps at the next heartbeat
    return config


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "src"
    (root / "sub").mkdir(parents=True)
    rng = random.Random(5)
    for i in range(FILES):
        (root / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes(
            rng.randbytes(FILE_MIB * 1024 * 1024))
    (root / "small.txt").write_text("small\n")
    return root


def committed(grid: Grid) -> int:
    return int(query(grid, "SELECT count(*) FROM packs WHERE user_name = 'carol'")[0][0])


def start_backup(grid: Grid, config: Path, src: Path) -> subprocess.Popen[str]:
    env = child_env({"P2PBAK_CONFIG": str(config),
                     "P2PBAK_PASSWORD_FILE": str(grid.password_file)})
    return subprocess.Popen([sys.executable, "-m", "p2pbak", "backup", str(src), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool],
              timeout: float = 120) -> bool:
    """SIGKILL `proc` as soon as `ready()`; False if it finished first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if ready():
            proc.kill()
            proc.communicate()
            return True
        assert time.monotonic() < deadline, "backup neither finished nor reached the point"
        time.sleep(0.05)
    proc.communicate()
    return False


def assert_no_broken_snapshot(grid: Grid, config: Path) -> None:
    r = grid.cli("check", "--json", config=config)
    assert summary(r)["problems"] == 0, r.stderr


def small_packs(grid: Grid) -> int:
    """Committed packs under 1 MiB: tree packs, the last ones a run commits."""
    return int(query(grid, "SELECT count(*) FROM packs WHERE user_name = 'carol'"
                           " AND length < 1048576")[0][0])


def mid_upload(grid: Grid) -> Callable[[], bool]:
    """True a random 0-1.5 s after this run was first granted store tickets."""
    seen: list[float] = []
    delay = random.uniform(0.0, 1.5)

    def ready() -> bool:
        granted = query(grid, "SELECT count(*) FROM grants WHERE user_name = 'carol'")[0][0]
        if granted and not seen:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > delay

    return ready


@pytest.fixture(scope="module")
def kills(grid: Grid, carol: Path, src: Path) -> list[bool]:
    """Three interrupted runs; whether each was killed before it finished."""
    out = []
    points: list[Callable[[int, int], Callable[[], bool]]] = [
        lambda packs, trees: mid_upload(grid),
        lambda packs, trees: lambda: committed(grid) > packs,  # right after a commit
        lambda packs, trees: lambda: small_packs(grid) > trees,  # after the last commit
    ]
    for point in points:
        proc = start_backup(grid, carol, src)
        out.append(kill_when(proc, point(committed(grid), small_packs(grid))))
        assert_no_broken_snapshot(grid, carol)
    return out


def test_killed_runs_leave_no_broken_snapshot(grid: Grid, carol: Path,
                                              kills: list[bool]) -> None:
    assert kills[0] and kills[1], "the first two runs were meant to die mid-upload"
    snaps = [m for m in lines(grid.cli("snapshots", "--json", config=carol).stdout)]
    assert len(snaps) <= 1  # only the last kill may come after the snapshot


def test_next_run_reuses_packs_and_restores(grid: Grid, carol: Path, src: Path,
                                            kills: list[bool], tmp_path: Path) -> None:
    check = summary(grid.cli("check", "--json", config=carol))
    stored = committed(grid)
    reusable = stored - check["unindexed_packs"]
    assert reusable >= 1  # the kill after a commit left that pack indexed
    final = summary(grid.cli("backup", str(src), "--json", config=carol))
    assert committed(grid) == stored + final["packs_added"]
    plan = summary(grid.cli("prune", "--dry-run", "--json", config=carol))
    # every pack committed and indexed before this run is used by its snapshot
    assert plan["packs_to_drop"] == check["unindexed_packs"]
    assert plan["packs_kept"] == reusable + final["packs_added"]
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=carol)
    assert summary(r)["snapshot_id"] == final["snapshot_id"]
    assert compare_trees(src, restored_root(tmp_path, src)) == []
    assert summary(grid.cli("check", "--read-data", "--json", config=carol))["problems"] == 0


def test_indexes_are_consolidated_after_a_whole_run(grid: Grid, carol: Path,
                                                    kills: list[bool]) -> None:
    """The final run replaced its per-pack checkpoint indexes by one index blob."""
    per_run = query(grid, "SELECT count(*) FROM blobs WHERE user_name = 'carol'"
                          " AND kind = 'index'")[0][0]
    assert per_run <= committed(grid)  # never more index blobs than packs
    s = summary(grid.cli("prune", "--json", config=carol))
    assert s["packs_dropped"] == s["packs_to_drop"]
    assert summary(grid.cli("check", "--json", config=carol))["unindexed_packs"] == 0
