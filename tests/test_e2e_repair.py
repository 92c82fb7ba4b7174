"""Automatic repair on a real grid: holders die, the checker notices, peers rebuild.

total−k holders of a pack are SIGKILLed and it still restores; the coordinator (fast
checker, short departure timeout) has peer agents rebuild the lost fragments on fresh
peers until every pack is back at `total`; then total−k more holders die, every original
holder among them, and the backup restores again from repaired fragments alone. The
coordinator is SIGKILLed and restarted while repairs are under way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.e2e_repair_support import (
    codes,
    fast_grid_fixture,
    kill_keeping_k,
    live_holders,
    placed_on,
    query,
    wait_until,
)
from tests.grid import stdlib_tree, summary

pytestmark = pytest.mark.slow

FIRST_PEERS = 8

grid_fixture = fast_grid_fixture(FIRST_PEERS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stdlib_tree(tmp_path_factory.mktemp("src"), parts=("json", "email"),
                       binary_kib=2048)


def restore_identical(grid: Grid, config: Path, tree: Path, target: Path) -> None:
    r = grid.cli("restore", "latest", "--target", str(target), "--json", config=config)
    summary(r)
    assert compare_trees(tree, restored_root(target, tree)) == []


def all_at_total(grid: Grid) -> bool:
    """Every pack is placed on n running peers, each holding an intact fragment of it."""
    holders, placed = live_holders(grid), placed_on(grid)
    return all(len(placed.get(pack, ())) == n and placed[pack] <= holders[pack]
               for pack, (_, n) in codes(grid).items())


def test_repair_brings_packs_back_to_total_and_survives_a_second_loss(
        grid: Grid, tree: Path, tmp_path: Path) -> None:
    alice = grid.add_user("alice", machine="laptop")
    summary(grid.cli("backup", str(tree), "--json", config=alice))
    code = codes(grid)
    original = live_holders(grid)
    assert original and all(len(h) == code[p][1] for p, h in original.items())
    loss = max(n - k for k, n in code.values())
    grid.add_peers(loss)  # fresh peers to rebuild onto
    assert len(grid.peers) >= 12

    first = kill_keeping_k(grid, [], loss)
    assert len(first) == loss
    assert min(len(h - first) - code[p][0] for p, h in original.items()) == 0, \
        "some pack must be left with exactly k holders"
    restore_identical(grid, alice, tree, tmp_path / "after-first-loss")

    # the coordinator dies mid-repair: tasks, leases and placements are in its database
    wait_until(lambda: query(grid, "SELECT count(*) FROM tasks WHERE kind = 'repair'")[0][0]
               > 0, 60, "a repair queued", grid)
    grid.restart_coordinator()
    wait_until(lambda: all_at_total(grid), 150, "every pack back at total", grid)
    done = query(grid, "SELECT count(*) FROM tasks WHERE kind = 'repair' AND state = 'done'")
    assert done[0][0] >= len(code)
    repaired = live_holders(grid)
    survivors = {name for h in original.values() for name in h} - first

    second = kill_keeping_k(grid, sorted(survivors), loss)
    assert len(second) == loss
    assert survivors <= second or len(survivors) > loss, "every original holder is gone"
    for pack, holders in repaired.items():
        left = holders - second
        assert len(left) >= code[pack][0]
        assert not left & {n for h in original.values() for n in h}
    restore_identical(grid, alice, tree, tmp_path / "after-second-loss")
