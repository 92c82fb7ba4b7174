"""No credit without proof, on a running grid with the coordinator's own deficit rule: an
account without a peer cannot back up (exit 13, told to run a peer); one whose peer is
online makes its first backup on a small allowance; a peer paid for proven work gets the
paper's maximum deficit; a peer declaring a petabyte and raising it 2% a price interval is
counted for what it has proven, not for its caps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pbak.errors import ExitCode
from p2pbak.localgrid.grid import Grid, wait_for
from p2pbak.market.caps import supply_from_caps
from p2pbak.market.proven import RATE_FLOOR, SPACE_FLOOR
from p2pbak.units import GB, MICRO
from tests.support.grid import GridSpec, one_line_error, random_files, summary

GRID = GridSpec(4, heartbeat=0.5, max_deficit=None, serve_args=(
    "--audit-interval", "1", "--price-interval", "2", "--billing-interval", "1"))
PETABYTE = 10**15

pytestmark = pytest.mark.slow


def _account(grid: Grid, config: Path) -> dict:
    return summary(grid.cli("status", "--json", config=config))["account"]


def _history(grid: Grid, config: Path) -> list[dict]:
    r = grid.cli("market", "prices", "--json", "--limit", "10000", config=config)
    return summary(r)["history"]


def test_no_peer_no_backup_then_a_first_backup_on_the_peers_allowance(
        grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 3, 64, seed=14)
    r = grid.cli("backup", str(src), config=alice)
    assert r.returncode == int(ExitCode.FROZEN) == 13
    err = one_line_error(r)
    assert "no deficit allowance" in err and "p2pbak peer run" in err
    assert _account(grid, alice)["max_deficit"] == 0

    bob = grid.add_supplier("bob")
    first = _account(grid, bob)
    assert first["supplied"] is False and 0 < first["max_deficit"] < 10 * MICRO
    summary(grid.cli("backup", str(src), "--json", config=bob))
    # the peers that stored bob's fragments were paid at commit: proven work, the paper's rule
    def paid() -> list[dict]:
        return [a for a in (_account(grid, p.config) for p in grid.peers
                            if p.name != "bob") if a["supplied"]]

    wait_for(lambda: bool(paid()), 30, "no holder of bob's fragments was paid")
    assert all(a["max_deficit"] >= 10 * MICRO for a in paid())


def _proven_bound(db: Path) -> tuple[float, float]:
    """Upper bounds of the S any price row may count (effective GB, GB/day): every peer at
    twice all it holds plus the floor, and its bandwidth at twice all it ever moved."""
    with sqlite3.connect(db) as conn:
        peers = conn.execute("SELECT id FROM peers").fetchall()
        held = dict(conn.execute("SELECT peer_id, sum(size) FROM fragments GROUP BY peer_id"))
        moved = conn.execute("SELECT coalesce(sum(size), 0) FROM acks").fetchone()[0]
    space = sum(supply_from_caps(2 * held.get(p, 0) + SPACE_FLOOR, 1, 1, 1.0).space
                for (p,) in peers)
    online_rate = sum(supply_from_caps(1, 2 * RATE_FLOOR, 1, 1.0).upload for _ in peers)
    return space, online_rate + 2 * moved / GB * 86400


def test_a_petabyte_raised_two_percent_a_day_is_counted_for_its_proof(
        grid: Grid, tmp_path: Path) -> None:
    mallory = grid.add_supplier("mallory")
    declared = PETABYTE
    before = len(_history(grid, mallory))
    last_set = declared
    for _ in range(3):  # a price interval apart, each 2% up: the hold never sees a swing
        summary(grid.cli("supply", "set", "--space", str(declared), "--upload", "1GB/s",
                         "--download", "1GB/s", "--json", config=mallory))
        want = len(_history(grid, mallory)) + 1
        wait_for(lambda w=want: len(_history(grid, mallory)) >= w, 30, "no price update")
        last_set, declared = declared, int(declared * 1.02)
    rows = [r for r in _history(grid, mallory)[before:] if r["supply"]]
    assert rows, "no price row measured a supply"
    space_bound, rate_bound = _proven_bound(grid.db)
    liar = supply_from_caps(PETABYTE, 10**9, 10**9, 0.5)  # what its caps alone would add
    for row in rows:
        assert row["supply"]["space"] <= space_bound * (1 + 1e-9)
        assert row["supply"]["space"] < liar.space / 1000
        assert row["supply"]["upload"] <= rate_bound * (1 + 1e-9)
        assert row["supply"]["upload"] < liar.upload / 1000
    # the caps are kept as typed; only what the market counts is bounded
    shown = summary(grid.cli("supply", "show", "--json", config=mallory))
    assert shown["caps"]["space"] == last_set
