"""Audits on a real grid: a peer whose stored fragments rot is caught and replaced.

Bytes are flipped in one holder's storage folder on disk; audits by the other peers fetch
its fragments and find them bad, the coordinator disqualifies it, and the checker has its
fragments rebuilt on a peer that held none; the backup still restores byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.e2e_repair_support import (
    codes,
    fast_grid_fixture,
    live_holders,
    placed_on,
    query,
    wait_until,
)
from tests.grid import stdlib_tree, summary

pytestmark = pytest.mark.slow

grid_fixture = fast_grid_fixture(6)


def flip_bytes(peer_storage: Path) -> int:
    """Damage every fragment file of a peer in place (one byte in the middle)."""
    damaged = 0
    for f in (peer_storage / "fragments").rglob("*"):
        if f.is_file() and len(f.name) == 64:
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0xFF
            f.write_bytes(bytes(data))
            damaged += 1
    return damaged


def test_a_peer_serving_corrupt_fragments_is_disqualified_and_repaired(
        grid: Grid, tmp_path: Path) -> None:
    tree = stdlib_tree(tmp_path / "src", parts=("json",), binary_kib=1024)
    alice = grid.add_user("alice", machine="laptop")
    summary(grid.cli("backup", str(tree), "--json", config=alice))
    holders = live_holders(grid)
    names = {p.name: p for p in grid.peers}
    liar = sorted(set.intersection(*holders.values()))[0]
    grid.add_peers(2)  # room for the rebuilt fragments
    assert flip_bytes(names[liar].storage) >= len(holders)

    liar_id = names[liar].peer_id
    wait_until(lambda: query(grid, "SELECT state FROM peers WHERE id = ?",
                             (liar_id,)) == [("disqualified",)],
               120, f"{liar} disqualified", grid)
    failed = query(grid, "SELECT count(*) FROM audits WHERE peer_id = ? AND outcome = 'failed'",
                   (liar_id,))
    assert failed[0][0] >= 3
    honest = query(grid, "SELECT count(*) FROM audits WHERE peer_id != ? AND outcome = 'ok'",
                   (liar_id,))
    assert honest[0][0] > 0
    assert query(grid, "SELECT count(*) FROM audits WHERE peer_id != ? AND outcome = 'failed'",
                 (liar_id,)) == [(0,)], "an honest peer failed an audit"
    assert query(grid, "SELECT count(*) FROM peers WHERE state = 'disqualified'") == [(1,)]

    def repaired() -> bool:
        placed, held = placed_on(grid), live_holders(grid)
        return all(liar not in placed.get(pack, {liar}) and len(placed[pack]) == n
                   and placed[pack] <= held[pack] for pack, (_, n) in codes(grid).items())

    wait_until(repaired, 120, f"the packs of {liar} repaired elsewhere", grid)
    r = grid.cli("restore", "latest", "--target", str(tmp_path / "out"), "--json",
                 config=alice)
    summary(r)
    assert compare_trees(tree, restored_root(tmp_path / "out", tree)) == []
