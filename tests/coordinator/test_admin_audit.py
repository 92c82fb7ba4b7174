"""`p2pbak admin audit` on a real coordinator database, healthy and broken."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from p2pbak.coordinator import accounts, billing, tariff
from p2pbak.localgrid.grid import run_cli
from p2pbak.market import bank as rules
from tests.coordinator.test_bank import machine_id, open_coord, placed_ticket
from tests.support.grid import one_line_error, summary


def ledger_db(tmp: Path) -> Path:
    async def scenario(path: Path) -> None:
        coord = await open_coord(path, max_deficit=1000)
        try:
            await accounts.check_accounts(coord)  # records the limit, as serve's job does
            _, table = await tariff.current_prices(coord)
            await billing.charge_backup(coord, "alice", "05" * 32,
                                        2000 * rules.GB // table.backup)
            await billing.settle_receipt(coord, machine_id(1),
                                         await placed_ticket(coord, 0, 1, 10**8))
        finally:
            await coord.stop()

    asyncio.run(scenario(tmp))
    return tmp / "c.db"


def test_audit_of_a_healthy_ledger(tmp_path: Path) -> None:
    db = ledger_db(tmp_path)
    fields = summary(run_cli(["admin", "audit", "--db", str(db), "--json"]))
    assert fields["ok"] is True and fields["sum"] == 0
    assert fields["entries"] == 4 and fields["accounts"] == 3 and fields["unfrozen"] == []
    assert fields["bank_balance"] + fields["users_balance"] == 0
    text = run_cli(["admin", "audit", "--db", str(db)]).stdout
    assert "FAILED" not in text and "sum over all accounts: 0" in text


def test_audit_fails_on_a_broken_ledger(tmp_path: Path) -> None:
    db = ledger_db(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO entries(txn, movement, account, amount) "
                     "VALUES (1, 9, 'bank', 5)")
        conn.execute("DELETE FROM alerts")  # alice is frozen, but nothing says so
    r = run_cli(["admin", "audit", "--db", str(db), "--json"])
    assert r.returncode == 1
    line = [ln for ln in r.stdout.splitlines() if '"summary"' in ln]
    assert '"ok": false' in line[0] and '"sum": 5' in line[0] and '"alice"' in line[0]
    r = run_cli(["admin", "audit", "--db", str(db)])
    assert "ledger audit failed" in one_line_error(r)
    assert r.stdout.count("FAILED") == 4


def test_audit_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    r = run_cli(["admin", "audit", "--db", str(tmp_path / "nope.db")])
    assert r.returncode == 1 and "no database" in one_line_error(r)
    assert not (tmp_path / "nope.db").exists()


def test_audit_finds_a_supplier_payment_without_evidence(tmp_path: Path) -> None:
    """A receipt booked with no committed placement or acknowledged transfer behind it (as
    the phantom tickets of issue 14 were) fails the audit, though the ledger sums to 0."""
    db = ledger_db(tmp_path)
    assert summary(run_cli(["admin", "audit", "--db", str(db), "--json"]))["unbacked"] == []
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM evidence")
    r = run_cli(["admin", "audit", "--db", str(db), "--json"])
    assert r.returncode == 1
    line = next(ln for ln in r.stdout.splitlines() if '"summary"' in ln)
    assert '"sum": 0' in line and '"unbacked": ["placed:' in line
    text = run_cli(["admin", "audit", "--db", str(db)]).stdout
    assert "acknowledged transfer: 1:" in text and text.count("FAILED") == 1
