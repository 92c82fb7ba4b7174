"""Bulk inserts of many rows of one table (SQL only): SQLite's `executemany`, whose rows
stay in its own process; on PostgreSQL one `INSERT … SELECT FROM unnest(arrays)`, one
round trip with a column array per column, where `executemany` would send a statement
per row (the storage job writes millions of ledger rows an hour at 1M peers)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg

from p2pbak.store.db import dialect
from p2pbak.store.db.dialect import dialect_of


async def insert_rows(conn: Any, table: str, columns: Sequence[tuple[str, str]],
                      rows: Sequence[Sequence[Any]], conflict: str = "") -> None:
    """Insert `rows` into `table`'s `columns` ((name, PostgreSQL type) each); `conflict`
    is an `ON CONFLICT …` clause both engines share."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if dialect_of(conn) == "sqlite":
        await conn.executemany(f"INSERT INTO {table}({names}) VALUES"
                               f" ({', '.join('?' * len(columns))}) {conflict}", rows)
        return
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, 1))
    try:
        await conn.raw.execute(f"INSERT INTO {table}({names}) SELECT * FROM unnest({arrays})"
                               f" {conflict}", *(list(col) for col in zip(*rows, strict=True)))
    except asyncpg.IntegrityConstraintViolationError as exc:  # as the SQLite callers expect
        raise sqlite3.IntegrityError(str(exc)) from exc


async def run_bulk(conn: Any, sql: str, params: Sequence[Any] = ()) -> None:
    """A set-based statement that may write millions of rows: on PostgreSQL without the
    `RETURNING` of row ids that `dialect.to_postgres` gives an INSERT (parameters must be
    of the types PostgreSQL infers: cast them in the SQL)."""
    if dialect_of(conn) == "sqlite":
        await conn.execute(sql, params)
        return
    text, _ = dialect.to_postgres(sql, rowid=False)
    try:
        await conn.raw.execute(text, *params)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise sqlite3.IntegrityError(str(exc)) from exc
