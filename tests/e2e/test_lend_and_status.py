"""`supply set --space 0` lends nothing: the peer stores nothing new and the coordinator
places nothing there, while the other peers take the backup. `status` counts the peers
heard from within the online window, says which window, and names the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, fragment_files, wait_for
from tests.support.grid import GridSpec, summary

GRID = GridSpec(4, heartbeat=0.5, serve_args=("--online-window", "3"))
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


def test_status_drops_stopped_peers_and_names_the_machine(grid: Grid) -> None:
    bob = grid.add_user("bob", machine="bobs-laptop")
    assert summary(grid.cli("status", "--json", config=bob))["peers_online"] == 4
    for peer in grid.peers[2:]:
        peer.process.stop()

    def two() -> bool:
        return summary(grid.cli("status", "--json", config=bob))["peers_online"] == 2

    wait_for(two, 30, "status did not drop the stopped peers")
    fields = summary(grid.cli("status", "--json", config=bob))
    assert fields["online_window"] == 3 and fields["machine_name"] == "bobs-laptop"
    text = grid.cli("status", config=bob).stdout
    assert "machine: bobs-laptop\n" in text and fields["machine_id"] not in text
    assert "peers online: 2 (heartbeat in the last 3 s)" in text
