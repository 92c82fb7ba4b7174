"""A `peer run` that stops (SIGTERM or SIGINT) tells the coordinator it goes offline, so the
counts drop at once instead of after the online window (here the default 180 s, far longer
than the test); a heartbeat brings it back, and nothing else changes (its last heartbeat
time, from which the departure timeout counts, stays)."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from p2pbak.localgrid.grid import Grid
from tests.support.grid import GridSpec, summary

GRID = GridSpec(4)
pytestmark = pytest.mark.slow


def _rows(grid: Grid) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(grid.db) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT id, state, last_seen FROM peers")}


def test_stopped_peers_are_offline_at_once_and_come_back(grid: Grid) -> None:
    bob = grid.add_user("bob")
    assert summary(grid.cli("status", "--json", config=bob))["peers_online"] == 4
    term, intr = grid.peers[2], grid.peers[3]
    term.process.stop()  # SIGTERM, waits for the exit
    intr.process.popen.send_signal(signal.SIGINT)
    assert intr.process.popen.wait(15) == 0
    stopped = time.time()
    fields = summary(grid.cli("status", "--json", config=bob))
    assert fields["peers_online"] == 2 and fields["online_window"] == 180
    assert grid.online_peers() == 2
    rows = _rows(grid)
    for peer in (term, intr):
        assert "going offline" in peer.process.output()
        state, last_seen = rows[peer.peer_id]
        assert state == "offline" and stopped - 30 < last_seen <= stopped + 1
    assert {rows[p.peer_id][0] for p in grid.peers[:2]} == {"active"}
    grid.restart_peer(term)  # its first heartbeat makes it active again
    assert summary(grid.cli("status", "--json", config=bob))["peers_online"] == 3
    assert _rows(grid)[term.peer_id][0] == "active"
