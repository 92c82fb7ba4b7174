"""A backup on a small grid finishes with one chosen supplier dead, and is topped up later.

On 8 peers the code is k=2 of n=8 with success=7: a SIGKILLed peer that still counts as
online (inside the online window) is planned, its fragment fails, the backup commits the
other 7 and exits 0; the checker then rebuilds the 8th fragment on a peer that joins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, fragment_files
from tests.e2e_repair_support import live_holders, placed_on, wait_until
from tests.grid import make_grid_fixture, stdlib_tree, summary

pytestmark = pytest.mark.slow

grid_fixture = make_grid_fixture(8, heartbeat=1.0, serve_args=(
    "--online-window", "60", "--checker-interval", "1", "--departure-timeout", "3600"))


def test_backup_survives_a_dead_supplier_and_is_topped_up(grid: Grid, tmp_path: Path) -> None:
    tree = stdlib_tree(tmp_path / "src", parts=("json",), binary_kib=256)
    alice = grid.add_user("alice")
    grid.peers[0].process.kill()  # dead, but still "online" for up to 60 s
    done = summary(grid.cli("backup", str(tree), "--json", config=alice))
    assert done["packs_added"] >= 1
    placed = placed_on(grid)
    assert placed and all(len(holders) == 7 for holders in placed.values()), placed
    assert all(grid.peers[0].name not in holders for holders in placed.values())

    target = tmp_path / "restored"
    summary(grid.cli("restore", "latest", "--target", str(target), "--json", config=alice))
    assert compare_trees(tree, restored_root(target, tree)) == []

    grid.add_peers(1)
    wait_until(lambda: all(len(h) == 8 for h in live_holders(grid).values())
               and len(fragment_files(grid)) == len(placed), 90,
               "every pack back at 8 live fragments", grid)
