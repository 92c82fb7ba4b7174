"""Ledger entries name a real transaction and account, on both backends: SQLite by its
declared foreign keys, PostgreSQL by the statement-level checks that replace them
(store/db/refs.py). A bad entry, or deleting or renaming what entries name, is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from p2pbak.market.bank import BANK, Posting
from p2pbak.store.db import bank
from p2pbak.store.db.database import Database
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("db_backend")

REFUSED = [
    ("INSERT INTO entries(txn, movement, account, amount) VALUES (999, 0, 'bank', 0)", ()),
    ("INSERT INTO entries(txn, movement, account, amount) SELECT id, 5, 'user:ghost', 0"
     " FROM transactions", ()),
    ("UPDATE entries SET account = 'user:ghost' WHERE amount > 0", ()),
    ("DELETE FROM transactions", ()),
    ("DELETE FROM accounts WHERE name = ?", (BANK,)),
    ("UPDATE accounts SET name = 'user:other' WHERE name = 'user:ann'", ()),
    ("UPDATE transactions SET id = id + 100", ()),
]


def test_entries_name_real_rows(tmp_path: Path) -> None:
    async def go() -> None:
        db = await Database.open(postgres.CURRENT.database(tmp_path))
        try:
            assert await bank.book(db, kind="upkeep", ref="r", postings=[
                Posting(BANK, -5), Posting("user:ann", 5)])
            async with db.transaction() as conn:  # an account no entry names may go
                await conn.execute("INSERT INTO accounts(name, created) VALUES ('x', 0)")
            async with db.transaction() as conn:
                await conn.execute("DELETE FROM accounts WHERE name = 'x'")
            for sql, params in REFUSED:
                with pytest.raises(sqlite3.IntegrityError):
                    async with db.transaction() as conn:
                        await conn.execute(sql, params)
            audit = await bank.audit(db)
            assert audit.ok and audit.entries == 2 and audit.transactions == 1, audit
        finally:
            await db.close()

    asyncio.run(go())
