"""`supply set --space 0` lends nothing: the peer stores nothing new and the coordinator
places nothing there, while the other peers take the backup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, fragment_files
from tests.support.grid import GridSpec, summary

GRID = GridSpec(4, heartbeat=0.5)
pytestmark = pytest.mark.slow


def test_a_peer_lending_zero_space_is_given_no_fragment(grid: Grid, tmp_path: Path) -> None:
    zero = grid.peers[0]
    set_ = summary(grid.cli("supply", "set", "--space", "0", "--json", config=zero.config))
    assert set_["caps"]["space"] == 0 and set_["sent"] is True and set_["peer_known"]
    alice = grid.add_user("alice")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(300_000))
    backed = summary(grid.cli("backup", str(src), "--json", config=alice))
    assert backed["packs_added"] >= 1
    held = {name for places in fragment_files(grid).values() for name, _ in places}
    assert zero.name not in held, "a fragment was placed on the peer that lends 0"
    assert held == {p.name for p in grid.peers[1:]}  # every other peer took its share
    health = grid.cli("status", "--json", config=zero.config)
    assert summary(health)["caps"]["space"] == 0
