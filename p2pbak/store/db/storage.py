"""The hourly storage job's SQL (coordinator/billing.accrue_storage): what is stored and
held, from the kept totals (store/db/totals.py), and its booking in a handful of set-based
statements. The amounts come from the market's rules in Python; only they are sent (one
row per owner and per paid account, into temporary tables), and the ledger's rows are made
from them in SQL: a transaction per owner, two entries per movement, every balance by one
UPDATE. Writing millions of ledger rows an hour at 1M peers is what this keeps cheap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from p2pbak.market.bank import BANK
from p2pbak.store.db.bank import BALANCES_SINCE, USER_PREFIX
from p2pbak.store.db.bulk import insert_rows, run_bulk
from p2pbak.store.db.database import Database, fetch_one
from p2pbak.store.db.dialect import dialect_of

KIND = "storage"

_STAGE = {  # one run's amounts; PostgreSQL empties them at commit, SQLite is told to
    "sqlite": ("CREATE TEMP TABLE IF NOT EXISTS storage_charges (user_name TEXT NOT NULL,"
               " charge BIGINT NOT NULL, quantity BIGINT NOT NULL)",
               "CREATE TEMP TABLE IF NOT EXISTS storage_pays (account TEXT NOT NULL,"
               " amount BIGINT NOT NULL)",
               "DELETE FROM storage_charges", "DELETE FROM storage_pays"),
    # a run sorts, hashes and collects (the references' transition tables) millions of
    # rows: room for them in memory, for this transaction only (the default is 4 MB)
    "postgresql": ("SET LOCAL work_mem = '256MB'",
                   "CREATE TEMP TABLE IF NOT EXISTS storage_charges (user_name TEXT NOT NULL,"
                   " charge BIGINT NOT NULL, quantity BIGINT NOT NULL) ON COMMIT DELETE ROWS",
                   "CREATE TEMP TABLE IF NOT EXISTS storage_pays (account TEXT NOT NULL,"
                   " amount BIGINT NOT NULL) ON COMMIT DELETE ROWS"),
}

# each owner's transaction, then the run's one paying the holders (if any is paid)
_TRANSACTIONS = (
    "INSERT INTO transactions(kind, ref, user_name, quantity, at) SELECT 'storage',"
    " 'storage:' || user_name || ':' || CAST(? AS TEXT), user_name, quantity,"
    " CAST(? AS BIGINT) FROM storage_charges")
_PAY_TRANSACTION = (
    "INSERT INTO transactions(kind, ref, user_name, quantity, at) SELECT 'storage',"
    " CAST(? AS TEXT), NULL, 0, CAST(? AS BIGINT) WHERE EXISTS (SELECT 1 FROM storage_pays)")
# UNION ALL: a name twice is skipped by the conflict clause, cheaper than sorting 2M names
_ACCOUNTS = (
    "INSERT INTO accounts(name, created) SELECT name, CAST(? AS BIGINT) FROM"
    " (SELECT CAST(? AS TEXT) || user_name AS name FROM storage_charges WHERE charge > 0"
    " UNION ALL SELECT account FROM storage_pays UNION ALL SELECT CAST(? AS TEXT)) AS a"
    " WHERE true ON CONFLICT(name) DO NOTHING")
# a movement is two entries, −x on the payer and +x on the payee (`side` 0 and 1)
_SIDES = "(SELECT 0 AS side UNION ALL SELECT 1) AS s"
_CHARGE_ENTRIES = (
    "INSERT INTO entries(txn, movement, account, amount) SELECT tx.id, 0,"
    " CASE s.side WHEN 0 THEN CAST(? AS TEXT) || c.user_name ELSE CAST(? AS TEXT) END,"
    " CASE s.side WHEN 0 THEN -c.charge ELSE c.charge END"
    f" FROM transactions tx JOIN storage_charges c ON c.user_name = tx.user_name CROSS JOIN"
    f" {_SIDES} WHERE tx.at = CAST(? AS BIGINT) AND tx.kind = 'storage' AND c.charge > 0")
_PAY_ENTRIES = (
    "INSERT INTO entries(txn, movement, account, amount) SELECT n.txn, n.mv,"
    " CASE s.side WHEN 0 THEN CAST(? AS TEXT) ELSE n.account END,"
    " CASE s.side WHEN 0 THEN -n.amount ELSE n.amount END FROM (SELECT tx.id AS txn,"
    " row_number() OVER (ORDER BY p.account) - 1 AS mv, p.account, p.amount"
    " FROM transactions tx CROSS JOIN storage_pays p WHERE tx.ref = CAST(? AS TEXT)) AS n"
    f" CROSS JOIN {_SIDES}")



async def rows(db: Database) -> tuple[list[tuple[str, int]], list[tuple[str, int, float]]]:
    """What the storage job bills, one row per user or peer from the kept totals:
    (user, bytes of its packs) for every user with packs, and (holder's owner, bytes the
    peer holds, its availability) for every peer holding any."""
    data = [(r[0], int(r[1])) for r in await db.all(
        "SELECT user_name, bytes FROM stored WHERE packs > 0")]
    held = [(r[0], int(r[1]), float(r[2])) for r in await db.all(
        "SELECT m.user_name, h.bytes, pe.availability FROM held h"
        " JOIN peers pe ON pe.id = h.peer_id JOIN machines m ON m.id = h.peer_id"
        " WHERE h.bytes > 0")]
    return data, held


def pay_ref(t: int) -> str:
    return f"storage-pay:{t}"


async def book_in(conn: Any, t: int, charges: Sequence[tuple[str, int, int]],
                  pays: Sequence[tuple[str, int]]) -> int:
    """Book a storage run at `t` in the caller's transaction: per owner (user, µc charged,
    byte-seconds) a transaction 'storage:<user>:<t>' with the movement owner → bank (none
    for a charge of 0); one transaction 'storage-pay:<t>' with a movement bank → account
    per (account, µc > 0). Nothing if a run at `t` was booked before (its refs are
    unique). Returns the entries written."""
    if await fetch_one(conn, "SELECT 1 FROM transactions WHERE at = ? AND kind = ? LIMIT 1",
                       (t, KIND)):
        return 0
    for statement in _STAGE[dialect_of(conn)]:
        await conn.execute(statement)
    await insert_rows(conn, "storage_charges", (("user_name", "text"), ("charge", "bigint"),
                                                ("quantity", "bigint")), charges)
    await insert_rows(conn, "storage_pays", (("account", "text"), ("amount", "bigint")),
                      [p for p in pays if p[1] > 0])
    first = int((await fetch_one(conn, "SELECT coalesce(max(id), 0) + 1 FROM entries"))[0])
    await run_bulk(conn, _TRANSACTIONS, (str(t), t))
    await run_bulk(conn, _PAY_TRANSACTION, (pay_ref(t), t))
    await run_bulk(conn, _ACCOUNTS, (t, USER_PREFIX, BANK))
    await run_bulk(conn, _CHARGE_ENTRIES, (USER_PREFIX, BANK, t))
    await run_bulk(conn, _PAY_ENTRIES, (BANK, pay_ref(t)))
    await run_bulk(conn, BALANCES_SINCE, (first,))
    if dialect_of(conn) == "sqlite":
        for statement in _STAGE["sqlite"][2:]:
            await conn.execute(statement)
    return 2 * (sum(1 for _, c, _ in charges if c > 0) + sum(1 for _, a in pays if a > 0))
