"""The coordinator's SQLite database: connections, transactions, versioned migrations.

One writer connection (every change runs in `transaction()`, serialised by a lock, BEGIN
IMMEDIATE) and one reader connection (autocommit, so every read sees the last commit and
never a half-done write). WAL mode lets the two run side by side; foreign keys are on.
The schema itself is the list in `schema.MIGRATIONS`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from p2pbak.errors import P2pbakError
from p2pbak.store.db.dialect import TABLE_EXISTS, dialect_of, is_postgres
from p2pbak.store.db.schema import MIGRATIONS, Migration

Row = aiosqlite.Row
BATCH = 500  # ids per statement, under SQLite's bound-parameter limit


def now() -> int:
    """Unix seconds: the coordinator's one clock for every timestamp column."""
    return int(time.time())


def batches(ids: Iterable[str]) -> list[list[str]]:
    """`ids` without repeats, in order, cut into statement-sized parts."""
    unique = list(dict.fromkeys(ids))
    return [unique[i:i + BATCH] for i in range(0, len(unique), BATCH)]


def marks(part: Sequence[object]) -> str:
    """The `?,?,…` placeholders for an IN list of `part`."""
    return ",".join("?" * len(part))


class Database:
    """An open coordinator database. Use `await Database.open(path)`; close with `close()`.
    A `postgresql://` URL instead of a path opens the PostgreSQL backend (`postgres.py`),
    which has this class's interface."""

    dialect = "sqlite"

    def __init__(self, path: Path, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        # One statement at a time on the reader: a cursor left open by one request would
        # otherwise hold its read snapshot, and another request's read would see stale data.
        self._read_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, migrate: bool = True) -> Database:
        if is_postgres(path):
            return await _open_postgres(str(path), migrate)
        path = Path(path)
        fresh = not path.exists()
        writer = await _connect(path)
        if fresh:
            os.chmod(path, 0o600)  # it holds the ticket signing key
        db = cls(path, writer, await _connect(path))
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            if migrate:
                await apply_migrations(db, MIGRATIONS)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise P2pbakError(f"cannot use database {path}: {exc}: is it a p2pbak "
                              "coordinator database?") from None
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock, self._read_lock:
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One atomic change: commits on success, rolls back on any exception."""
        async with self._lock:
            conn = self._writer
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    @asynccontextmanager
    async def job_lock(self, name: str) -> AsyncIterator[bool]:
        """Whether this process may run job `name` now: always, on SQLite (one coordinator
        per file). PostgreSQL's holds an advisory lock so one coordinator of many runs it."""
        yield True

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        # execute_fetchall: one trip to aiosqlite's thread, where a cursor's execute,
        # fetch and close would take three (most reads are a row or a few)
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]


async def _open_postgres(url: str, migrate: bool) -> Database:
    # asyncpg is loaded only for a PostgreSQL URL: keeps start-up fast for the SQLite default
    from p2pbak.store.db.postgres import open_postgres

    db = await open_postgres(url)
    try:
        if migrate:
            async with db.migration_lock():
                await apply_migrations(db, MIGRATIONS)  # type: ignore[arg-type]
    except BaseException:
        await db.close()
        raise
    return db  # type: ignore[return-value]


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise P2pbakError(f"cannot open database {path}: {exc}: check the path and "
                          "its permissions") from None
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=10000")
    return conn


async def fetch_one(conn: aiosqlite.Connection, sql: str,
                    params: Iterable[Any] = ()) -> Row | None:
    """A read inside a transaction (on the writer connection)."""
    rows = await fetch_all(conn, sql, params)
    return rows[0] if rows else None


async def fetch_all(conn: aiosqlite.Connection, sql: str,
                    params: Iterable[Any] = ()) -> list[Row]:
    return list(await conn.execute_fetchall(sql, tuple(params)))


async def write_many(conn: aiosqlite.Connection, sql: str,
                     rows: Iterable[Sequence[Any]]) -> None:
    """Many rows of one statement, no row count wanted: pipelined on PostgreSQL (one round
    trip, where `executemany` of an UPDATE counts row by row), `executemany` on SQLite."""
    if dialect_of(conn) == "postgresql":
        await conn.write_many(sql, rows)  # type: ignore[attr-defined]
    else:
        await conn.executemany(sql, rows)


async def schema_version(db: Database) -> int:
    exists = await db.scalar(TABLE_EXISTS[db.dialect], ("schema_version",))
    if not exists:
        return 0
    return int(await db.scalar("SELECT coalesce(max(version), 0) FROM schema_version"))


async def apply_migrations(db: Database, migrations: Sequence[Migration]) -> int:
    """Bring `db` up to len(migrations); a no-op when it is there. Returns the version."""
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)")
    current = await schema_version(db)
    if current > len(migrations):
        raise P2pbakError(f"database {db.path} has schema version {current}, newer than this "
                          f"p2pbak knows ({len(migrations)}): upgrade p2pbak")
    for version in range(current + 1, len(migrations) + 1):
        await _apply_one(db, version, migrations[version - 1])
    return len(migrations)


async def _apply_one(db: Database, version: int, migration: Migration) -> None:
    async with db.transaction() as conn:
        if callable(migration):
            await migration(conn)
        else:
            for statement in migration:
                await conn.execute(statement)
        await conn.execute("INSERT INTO schema_version(version, applied) VALUES (?, ?)",
                           (version, now()))
