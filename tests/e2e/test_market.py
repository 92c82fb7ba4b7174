"""The market on a real grid: freezing, receipts paid by the bank, the price job, status.

One coordinator started with a tiny --max-deficit and short billing and price intervals,
four peer agents and a consumer without a peer of its own; every process is real.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, wait_for
from tests.support.grid import GridSpec, one_line_error, summary

pytestmark = pytest.mark.slow

PEERS = 4


GRID = GridSpec(PEERS, heartbeat=0.5, serve_args=(
    "--max-deficit", "0.000001", "--billing-interval", "0.5", "--price-interval", "1"))


@pytest.fixture(scope="module")
def alice(grid: Grid) -> Path:
    return grid.add_user("alice")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "notes.txt").write_text("the market decides\n" * 1000)
    # incompressible, so each fragment is big enough to earn whole micro-credits
    (src / "data.bin").write_bytes(random.Random(7).randbytes(2_000_000))
    return src


def ledger(db: Path) -> tuple[int, dict[str, int]]:
    """(Σ entries, balance per account) read straight from the coordinator's SQLite file."""
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT coalesce(sum(amount), 0) FROM entries").fetchone()[0]
        rows = conn.execute("SELECT name, balance FROM accounts").fetchall()
    return int(total), {name: int(bal) for name, bal in rows}


@pytest.fixture(scope="module")
def first_backup(grid: Grid, alice: Path, tree: Path) -> dict:
    return summary(grid.cli("backup", str(tree), "--json", config=alice))


def test_first_backup_is_charged_and_suppliers_paid_by_receipt(grid: Grid,
                                                               first_backup: dict) -> None:
    assert first_backup["snapshot_id"]

    def suppliers_paid() -> bool:
        _, balances = ledger(grid.db)
        return any(name.startswith("user:peer") and bal > 0 for name, bal in balances.items())

    wait_for(suppliers_paid, 30, "no supplier was paid for its receipts")
    total, balances = ledger(grid.db)
    assert total == 0
    assert sum(balances.values()) == 0
    assert balances["user:alice"] < 0


def test_frozen_account_cannot_back_up(grid: Grid, alice: Path, tree: Path,
                                       first_backup: dict) -> None:
    (tree / "new.txt").write_text("one more file\n")
    before = ledger(grid.db)[1]["user:alice"]
    r = grid.cli("backup", str(tree), "--json", config=alice)
    assert r.returncode == 13, r.stderr
    r = grid.cli("backup", str(tree), config=alice)
    assert r.returncode == 13
    error = one_line_error(r)
    assert error.startswith("p2pbak: error: account frozen"), error
    assert "restores still work" in error
    assert ledger(grid.db)[1]["user:alice"] <= before  # nothing charged for a refusal


def test_frozen_account_can_still_restore(grid: Grid, alice: Path, tree: Path,
                                          first_backup: dict, tmp_path: Path) -> None:
    target = tmp_path / "restore"
    r = grid.cli("restore", first_backup["snapshot_id"], "--target", str(target), "--json",
                 config=alice)
    summary(r)
    (tree / "new.txt").unlink(missing_ok=True)
    assert compare_trees(tree, restored_root(target, tree)) == []


def test_status_shows_the_alert(grid: Grid, alice: Path, first_backup: dict) -> None:
    def alerted() -> bool:
        return summary(grid.cli("status", "--json", config=alice))["account"]["alert"] \
            is not None

    wait_for(alerted, 30, "no alert was raised for a frozen account")
    fields = summary(grid.cli("status", "--json", config=alice))
    account = fields["account"]
    assert account["frozen"] and account["alert"]["level"] == "frozen"
    assert account["balance"] <= -account["max_deficit"]
    assert set(fields["caps"]) == {"space", "upload", "download"}
    assert fields["backup_space_available"] >= 0 and fields["machine_availability"] == 0.5
    text = grid.cli("status", config=alice).stdout
    flat = " ".join(text.split())
    assert "frozen: backups paused" in flat and "more available" in flat
    assert str(account["balance"]) not in text  # no balance for people unless asked


def test_price_job_writes_history(grid: Grid, alice: Path, first_backup: dict) -> None:
    def rows() -> list[dict]:
        r = grid.cli("market", "prices", "--json", "--limit", "10000", config=alice)
        return summary(r)["history"]

    wait_for(lambda: any(r["g"] is not None for r in rows()), 60,
             "the price job wrote no row with a measured g(p)")
    history = rows()
    assert history[0]["note"] == "initial prices"
    measured = [r for r in history if r["g"] is not None]
    assert all(r["p_upload"] > 0 and r["p_download"] > 0 for r in history)
    assert measured[0]["demand"]["space"] > 0 and measured[0]["supply"]["space"] > 0
    ats = [r["at"] for r in history]
    assert ats == sorted(ats) and time.time() - ats[-1] < 600
    text = grid.cli("market", "prices", "--limit", "10000", config=alice).stdout
    assert "initial prices" in text


def test_supply_set_reaches_the_coordinator_and_the_running_agent(grid: Grid) -> None:
    peer = grid.peers[0]
    r = grid.cli("supply", "set", "--space", "3GB", "--upload", "2MB/s", "--json",
                 config=peer.config)
    assert summary(r)["sent"] and summary(r)["peer_known"]
    with sqlite3.connect(grid.db) as conn:
        row = conn.execute("SELECT space, upload FROM peers WHERE id = ?",
                           (peer.peer_id,)).fetchone()
    assert tuple(row) == (3_000_000_000, 2_000_000)
    wait_for(lambda: "caps changed" in peer.process.output(), 30,
             "the peer agent did not pick up the new caps")
    shown = summary(grid.cli("supply", "show", "--json", config=peer.config))
    assert shown["peer_known"] and shown["caps"]["space"] == 3_000_000_000


def call(grid: Grid, config: Path | None, method: str, path: str,
         body: object = None) -> tuple[int, dict]:
    """One request to the coordinator as the machine of `config` (None: no credentials)."""
    import json
    import urllib.error
    import urllib.request

    from p2pbak.config import load

    headers = {"Content-Type": "application/json"}
    if config is not None:
        cfg = load(config)
        headers["Authorization"] = f"Bearer {cfg.machine_id}.{cfg.secret}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(grid.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_receipts_route_pays_the_named_peer_once(grid: Grid, alice: Path,
                                                 first_backup: dict) -> None:
    with sqlite3.connect(grid.db) as conn:
        pack_id = conn.execute("SELECT id FROM packs WHERE user_name = 'alice'"
                               " ORDER BY length DESC").fetchone()[0]
    status, pack = call(grid, alice, "GET", f"/v1/packs/{pack_id}")
    assert status == 200
    frag = pack["fragments"][0]  # a fetch ticket naming this fragment's holder
    holder = grid.peer_by_id(frag["peer_id"])
    other = next(p for p in grid.peers if p.peer_id != frag["peer_id"])
    before = ledger(grid.db)[1]
    status, answer = call(grid, other.config, "POST", "/v1/receipts",
                          {"receipts": [frag["ticket"]]})
    assert status == 200 and answer["accepted"] == 0 and answer["paid"] == 0
    assert "another peer" in answer["refused"][0]["error"]
    status, answer = call(grid, holder.config, "POST", "/v1/receipts",
                          {"receipts": [frag["ticket"]]})  # nobody fetched: it waits
    assert status == 200 and answer["accepted"] == 0 and answer["pending"] == 1
    with sqlite3.connect(grid.db) as conn:  # not booked until its receiver says so
        assert conn.execute("SELECT count(*) FROM transactions WHERE ref = ?", (
            "ticket:" + _ticket_id(frag["ticket"]),)).fetchone()[0] == 0
    status, acked = call(grid, alice, "POST", "/v1/acks", {"acks": [frag["ticket"]]})
    assert status == 200 and acked["acknowledged"] == 1  # alice says she got it: paid now
    status, answer = call(grid, holder.config, "POST", "/v1/receipts",
                          {"receipts": [frag["ticket"], frag["ticket"]]})
    assert status == 200 and answer["accepted"] == 0 and answer["replayed"] == 2
    assert not answer["refused"]  # paid what today's (moving) price gives, maybe 0 µc
    after = ledger(grid.db)[1]
    assert after[f"user:{holder.name}"] - before[f"user:{holder.name}"] == acked["paid"]
    assert after["user:alice"] <= before["user:alice"]  # a retrieval is the owner's to pay
    with sqlite3.connect(grid.db) as conn:  # booked once, as a retrieval
        kinds = conn.execute("SELECT kind FROM transactions WHERE ref = ?",
                             ("ticket:" + _ticket_id(frag["ticket"]),)).fetchall()
    assert kinds == [("retrieval",)]
    assert ledger(grid.db)[0] == 0


def _ticket_id(wire: str) -> str:
    import base64
    import json

    body = wire.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["id"])


@pytest.mark.parametrize("body", [{}, {"receipts": []}, {"receipts": "x"},
                                  {"receipts": ["a"], "extra": 1}, {"receipts": ["a" * 5000]}])
def test_receipts_route_refuses_bad_bodies_with_400(grid: Grid, alice: Path,
                                                    body: dict) -> None:
    status, answer = call(grid, alice, "POST", "/v1/receipts", body)
    assert status == 400 and answer["error"]


def test_market_routes_validate_and_authenticate(grid: Grid, alice: Path) -> None:
    assert call(grid, None, "GET", "/v1/prices?limit=0")[0] == 400
    assert call(grid, None, "GET", "/v1/prices?limit=x")[0] == 400
    assert call(grid, None, "GET", "/v1/account")[0] == 401
    assert call(grid, None, "POST", "/v1/receipts", {"receipts": ["a"]})[0] == 401
    status, answer = call(grid, alice, "PUT", "/v1/supply", {"space": -1, "upload": None,
                                                             "download": None})
    assert status == 400 and "space" in answer["error"]
    status, answer = call(grid, alice, "PUT", "/v1/supply", {"space": 1, "upload": None,
                                                             "download": None})
    assert status == 200 and answer["peer_known"] is False  # alice runs no peer agent
