"""`store.db.copy`: the dependency order of the tables and `--db` values of both kinds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pbak.errors import P2pbakError
from p2pbak.store.db import copy, totals
from p2pbak.store.db.database import Database
from p2pbak.store.db.dialect import location


def test_every_table_comes_after_the_tables_it_references(tmp_path: Path) -> None:
    async def references() -> tuple[set[str], list[tuple[str, str]]]:
        db = await Database.open(tmp_path / "c.db")  # the schema as SQLite reports it
        try:
            tables = {str(r[0]) for r in await db.all(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            edges = [(t, str(r[0])) for t in tables for r in await db.all(
                "SELECT \"table\" FROM pragma_foreign_key_list(?)", (t,))]
        finally:
            await db.close()
        return tables - {"schema_version", *totals.TABLES}, edges

    tables, edges = asyncio.run(references())
    order = copy.tables_in_order()
    assert set(order) == tables and len(order) == len(tables)
    assert edges  # the schema has foreign keys, so the order matters
    for table, referenced in edges:
        if table != referenced:
            assert order.index(referenced) < order.index(table), (table, referenced)


def test_sqlite_copy_of_a_copy_keeps_every_row_and_refuses_a_full_target(
        tmp_path: Path) -> None:
    async def go() -> None:
        src = await Database.open(tmp_path / "a.db")
        dst = await Database.open(tmp_path / "b.db")
        try:
            async with src.transaction() as conn:
                await conn.execute("INSERT INTO users(name, salt, login_hash, login_hash_key,"
                                   " keyfile, created) VALUES ('u', ?, ?, ?, ?, 0)",
                                   (b"s", b"h", b"k", b"f"))
                await conn.execute("INSERT INTO accounts(name, balance, created)"
                                   " VALUES ('user:u', 0, 0)")
            rows = await copy.copy(src, dst)
            assert rows["users"] == 1 and rows["accounts"] == 1
            assert await copy.row_counts(dst) == await copy.row_counts(src)
            with pytest.raises(P2pbakError, match="not empty"):
                await copy.copy(src, dst)
            assert (await copy.copy(src, dst, force=True))["users"] == 1
        finally:
            await src.close()
            await dst.close()

    asyncio.run(go())


@pytest.mark.parametrize(("spec", "want"), [
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:/var/c.db", Path("/var/c.db")),
    ("sqlite:///var/c.db", Path("/var/c.db")),
    ("sqlite:rel/c.db", Path("rel/c.db")),
    ("/var/c.db", Path("/var/c.db")),
])
def test_db_values_of_both_kinds(spec: str, want: object) -> None:
    assert location(spec) == want


def test_an_empty_db_value_is_one_clear_error() -> None:
    with pytest.raises(P2pbakError, match="sqlite:PATH"):
        location("sqlite:")
    assert location("", Path("/d.db")) == Path("/d.db")
