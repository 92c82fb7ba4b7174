"""Graceful exit on a real grid: `supply leave` empties a peer with no pack below total.

Eight peers hold a user's packs; three more join; one holder leaves. The repair machinery
(fast checker) moves its fragments onto others; the command reports progress and returns
only once nothing is placed on it; then the agent stops and the backup still restores.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.support.e2e_repair import (
    codes,
    fast_grid,
    live_holders,
    placed_on,
    query,
    wait_until,
)
from tests.support.grid import lines, random_files, summary

pytestmark = pytest.mark.slow


def fragment_files_of(storage: Path) -> list[Path]:
    return [f for f in (storage / "fragments").rglob("*") if f.is_file()]


GRID = fast_grid(8)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_files(tmp_path_factory.mktemp("leave") / "src", 3, 700, seed=9)


@pytest.fixture(scope="module")
def erin(grid: Grid, src: Path) -> Path:
    config = grid.add_user("erin", machine="nas")
    summary(grid.cli("backup", str(src), "--json", config=config))
    grid.add_peers(3)  # room for the leaver's fragments
    return config


def test_leave_moves_every_fragment_then_finishes(grid: Grid, erin: Path, src: Path,
                                                  tmp_path: Path) -> None:
    before = placed_on(grid)
    leaver = next(p for p in grid.peers if any(p.name in h for h in before.values()))
    r = grid.cli("supply", "leave", "--timeout", "240", "--json", config=leaver.config)
    s = summary(r)
    assert s["state"] == "left" and s["fragments_left"] == 0
    progress = [m for m in lines(r.stdout) if m["message_type"] == "status"]
    assert progress and progress[0]["fragments_left"] >= 1
    after = placed_on(grid)
    n_of = {pack: n for pack, (_, n) in codes(grid).items()}
    assert set(after) == set(before)
    for pack, holders in after.items():
        assert leaver.name not in holders
        assert len(holders) == n_of[pack], f"pack {pack[:12]} below total"
    # ground truth: every pack has n intact fragments on disk without the leaver
    holders = live_holders(grid)
    for pack in after:
        assert len(holders[pack] - {leaver.name}) >= n_of[pack]
    state = query(grid, "SELECT state FROM peers WHERE id = ?", (leaver.peer_id,))
    assert state == [("left",)]
    # the moved copies were on its delete list: its agent emptied its disk
    wait_until(lambda: not fragment_files_of(leaver.storage), 60, "the leaver's disk empty",
               grid)
    leaver.process.stop()
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=erin)
    summary(r)
    assert compare_trees(src, restored_root(tmp_path, src)) == []


def test_placement_no_longer_chooses_a_peer_that_left(grid: Grid, erin: Path,
                                                      src: Path) -> None:
    (src / "new.bin").write_bytes(random.Random(10).randbytes(300 * 1024))
    before = set(placed_on(grid))
    summary(grid.cli("backup", str(src), "--json", config=erin))
    left = {p.name for p in grid.peers if not p.process.alive()}
    new = {pack: h for pack, h in placed_on(grid).items() if pack not in before}
    assert new and all(not h & left for h in new.values())


def test_a_peer_that_left_rejoins_with_a_clean_state(grid: Grid, erin: Path) -> None:
    leaver = next(p for p in grid.peers if not p.process.alive())
    assert query(grid, "SELECT state FROM peers WHERE id = ?", (leaver.peer_id,)) == \
        [("left",)]
    # a fragment it kept (say its delete list never reached it): not counted on return
    stray = next(f for f in fragment_files_of(grid.live_peers()[0].storage))
    kept = leaver.storage / "fragments" / stray.relative_to(stray.parents[2])
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(stray.read_bytes())
    grid.restart_peer(leaver)  # waits until the coordinator counts it online again
    row = query(grid, "SELECT state, availability, stored_bytes FROM peers WHERE id = ?",
                (leaver.peer_id,))
    # a new peer's prior (0.5), not its old estimate; the availability job may have
    # moved it by one heartbeat's worth since
    assert row[0][0] == "active" and abs(row[0][1] - 0.5) < 0.01, row
    assert not fragment_files_of(leaver.storage), "the old fragment was kept"
    wait_until(lambda: query(grid, "SELECT stored_bytes, free_bytes FROM peers WHERE id = ?",
                             (leaver.peer_id,))[0][1] > 0, 30, "its free space reported",
               grid)
    assert query(grid, "SELECT stored_bytes FROM peers WHERE id = ?",
                 (leaver.peer_id,)) == [(0,)]
    assert leaver.process.alive() and "re-joined after leaving" in leaver.process.output()
