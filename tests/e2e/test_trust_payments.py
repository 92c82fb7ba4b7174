"""Proof before pay on a running grid (issue 14, attack 1): no credit out of nothing.

A coordinator and four peer agents, every process real. The attacks of the issue: a 1 GiB
store ticket for a random pack id (refused, pays 0), a fetch ticket handed in unused or
expired (pays 0), a planned store never committed (pays 0); and the honest path still pays,
once, with `admin audit` finding every supplier payment backed by evidence.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, run_cli, wait_for
from p2pbak.net import tickets
from tests.e2e.test_market import _ticket_id, call, ledger
from tests.support.grid import GridSpec, summary

pytestmark = pytest.mark.slow

GIB = 1024**3

GRID = GridSpec(4, heartbeat=0.5)


@pytest.fixture(scope="module")
def alice(grid: Grid) -> Path:
    return grid.peers[0].config  # a user with a peer of its own, as the attacker was


@pytest.fixture(scope="module")
def backed_up(grid: Grid, alice: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    src = tmp_path_factory.mktemp("src")
    (src / "data.bin").write_bytes(secrets.token_bytes(1_500_000))
    summary(grid.cli("backup", str(src), "--json", config=alice))
    with sqlite3.connect(grid.db) as conn:
        return str(conn.execute("SELECT id FROM packs WHERE user_name = ? ORDER BY length DESC",
                                (grid.peers[0].name,)).fetchone()[0])


def test_phantom_store_for_a_random_pack_is_refused_and_pays_nothing(grid: Grid,
                                                                      alice: Path) -> None:
    victim = grid.peers[1]
    before = ledger(grid.db)[1]
    body = {"fragments": [{"index": 0, "fragment_id": secrets.token_hex(32), "size": GIB,
                           "peer_id": victim.peer_id}]}
    status, answer = call(grid, alice, "POST", f"/v1/packs/{secrets.token_hex(32)}/tickets",
                          body)
    assert status == 409 and "no plan" in answer["error"] and "tickets" not in answer
    assert ledger(grid.db)[1] == before and ledger(grid.db)[0] == 0


def test_planned_store_never_committed_pays_nothing(grid: Grid, alice: Path) -> None:
    """Even with a real plan and a real ticket, a store the owner never commits is not paid:
    the supplier's receipt waits as a claim for a placement that never comes."""
    pack_id = secrets.token_hex(32)
    status, plan = call(grid, alice, "POST", "/v1/packs/plan", {"size": GIB // 2,
                                                           "pack_id": pack_id})
    assert status == 200
    target = plan["peers"][0]["peer_id"]
    frag = {"index": 0, "fragment_id": secrets.token_hex(32), "size": plan["fragment_size"],
            "peer_id": target}
    other_pack = secrets.token_hex(32)  # the plan is bound to its pack
    assert call(grid, alice, "POST", f"/v1/packs/{other_pack}/tickets",
                {"fragments": [frag]})[0] == 409
    wrong_size = dict(frag, size=GIB)
    assert call(grid, alice, "POST", f"/v1/packs/{pack_id}/tickets",
                {"fragments": [wrong_size]})[0] == 409
    status, answer = call(grid, alice, "POST", f"/v1/packs/{pack_id}/tickets",
                          {"fragments": [frag]})
    assert status == 200
    holder = grid.peer_by_id(target)
    status, paid = call(grid, holder.config, "POST", "/v1/receipts",
                        {"receipts": answer["tickets"]})
    assert status == 200 and paid["paid"] == 0 and paid["pending"] == 1
    with sqlite3.connect(grid.db) as conn:
        booked = conn.execute("SELECT count(*) FROM transactions WHERE ref LIKE ?",
                              (f"placed:{target}:{frag['fragment_id']}%",)).fetchone()[0]
    assert booked == 0


def test_unused_and_expired_fetch_tickets_pay_nothing(grid: Grid, alice: Path,
                                                      backed_up: str) -> None:
    status, pack = call(grid, alice, "GET", f"/v1/packs/{backed_up}")
    assert status == 200
    frag = pack["fragments"][0]
    holder = grid.peer_by_id(frag["peer_id"])
    # unused: the holder hands in a fetch ticket nobody fetched with
    status, answer = call(grid, holder.config, "POST", "/v1/receipts",
                          {"receipts": [frag["ticket"]]})
    assert status == 200 and answer["paid"] == 0 and answer["accepted"] == 0
    assert answer["pending"] == 1
    # expired two hours ago, signed by the coordinator's own key (as one issued then was)
    with sqlite3.connect(grid.db) as conn:
        raw = conn.execute("SELECT value FROM settings WHERE name = 'ticket_signing_key'"
                           ).fetchone()[0]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(raw)
    old = tickets.issue(key, op="fetch", fragment=frag["fragment_id"], size=frag["size"],
                        from_=grid.peers[0].peer_id, to=holder.peer_id,
                        now=time.time() - 7200)
    status, answer = call(grid, holder.config, "POST", "/v1/receipts", {"receipts": [old]})
    assert status == 200 and answer["paid"] == 0
    assert "expired" in answer["refused"][0]["error"]
    # the receiver cannot make it pay late either
    status, acked = call(grid, alice, "POST", "/v1/acks", {"acks": [old]})
    assert status == 200 and acked["acknowledged"] == 0 and acked["refused"]
    # a machine that was not the ticket's receiver cannot acknowledge it
    status, acked = call(grid, grid.peers[2].config, "POST", "/v1/acks",
                         {"acks": [frag["ticket"]]})
    assert status == 200 and acked["acknowledged"] == 0
    assert "another machine" in acked["refused"][0]["error"]
    with sqlite3.connect(grid.db) as conn:  # neither ticket was booked (the holder's balance
        # may still move: its backup store receipts are paid as the commit backs them)
        booked = conn.execute("SELECT count(*) FROM transactions WHERE ref IN (?, ?)",
                              (f"ticket:{_ticket_id(frag['ticket'])}",
                               f"ticket:{_ticket_id(old)}")).fetchone()[0]
    assert booked == 0


def test_honest_transfers_pay_once_and_the_audit_finds_them_backed(
        grid: Grid, alice: Path, backed_up: str, tmp_path: Path) -> None:
    """The backup's stores are paid once committed; a restore's fetches once acknowledged
    (the restore does it itself); every receipt paid has its evidence."""
    def stores_paid() -> bool:
        with sqlite3.connect(grid.db) as conn:
            return conn.execute("SELECT count(*) FROM transactions WHERE kind = 'store'"
                                " AND ref LIKE 'placed:%'").fetchone()[0] > 0
    wait_for(stores_paid, 30, "no store receipt was paid after the commit")
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "out"), "--json",
                     config=alice))

    def fetches_paid() -> bool:
        with sqlite3.connect(grid.db) as conn:
            return conn.execute("SELECT count(*) FROM evidence WHERE kind = 'ack'"
                                ).fetchone()[0] > 0
    wait_for(fetches_paid, 30, "no fetch was paid after the restore acknowledged it")
    with sqlite3.connect(grid.db) as conn:
        per_placement = conn.execute(
            "SELECT count(*), count(DISTINCT ref) FROM transactions WHERE ref LIKE 'placed:%'"
        ).fetchone()
    assert per_placement[0] == per_placement[1]  # one payment per placement
    fields = summary(run_cli(["admin", "audit", "--db", str(grid.db), "--json"]))
    assert fields["ok"] and fields["unbacked"] == [] and fields["sum"] == 0
