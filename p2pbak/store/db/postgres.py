"""The coordinator database on PostgreSQL (asyncpg), behind the same interface as SQLite's.

A pool of connections. Reads run on any pooled connection (autocommit, each sees the last
commit). A write is `transaction()`: one pooled connection, BEGIN, then a transaction-level
advisory lock, so writers are serialised across every coordinator sharing the database just
as SQLite's BEGIN IMMEDIATE serialises them in one process: a read-then-write inside a
transaction (a ref booked once, a lease taken once) cannot race, and no posting is lost or
doubled. Statements are the store modules' own, rewritten once by `dialect.to_postgres`.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from p2pbak.errors import P2pbakError
from p2pbak.store.db import dialect
from p2pbak.store.db.dialect import redact

WRITE_LOCK = 0x7032_7062_616B_0001  # pg_advisory_xact_lock key of every write transaction
MIGRATE_LOCK = 0x7032_7062_616B_0002  # held while one coordinator migrates the schema
JOB_LOCKS = 0x7032_7062_0000_0000  # + crc32 of a job's name: one lock per background job
POOL_SIZE = 8
# prepared statements kept per connection: the store modules have a few hundred (an IN
# list of each length is its own), and asyncpg's default of 100 would prepare most again
STATEMENT_CACHE = 2000

_param_types: dict[str, tuple[str, ...]] = {}


class Cursor:
    """What a statement left: its rows, rows touched, the row id an INSERT made."""

    def __init__(self, rows: list[asyncpg.Record], rowcount: int, lastrowid: int | None):
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> asyncpg.Record | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[asyncpg.Record]:
        return self._rows


class _Pending:
    """`await conn.execute(...)` and `async with conn.execute(...) as cur`, as aiosqlite."""

    def __init__(self, conn: Connection, sql: str, params: Sequence[Any]):
        self._run = conn.run(sql, params)

    def __await__(self):
        return self._run.__await__()

    async def __aenter__(self) -> Cursor:
        return await self._run

    async def __aexit__(self, *exc: object) -> None:
        return None


class Connection:
    """One asyncpg connection speaking the store modules' SQL."""

    def __init__(self, raw: asyncpg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Iterable[Any] = ()) -> _Pending:
        return _Pending(self, sql, tuple(params))

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()
                               ) -> list[asyncpg.Record]:
        """A statement's rows (aiosqlite's name for it)."""
        return await (await self.run(sql, tuple(params))).fetchall()

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """Many rows of one statement. INSERTs go in one pipelined batch (rowcount unknown,
        -1); others one by one, counting the rows they touch (callers read that)."""
        rows = [tuple(r) for r in rows]
        text, returns = dialect.to_postgres(sql, rowid=False)
        if rows and text.lstrip()[:6].upper() == "INSERT" and not returns:
            await self.write_many(sql, rows)
            return Cursor([], -1, None)
        total = 0
        for params in rows:
            total += (await self.run(sql, params)).rowcount
        return Cursor([], total, None)

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Many rows of one statement in one pipelined batch, whatever the statement (no
        row count): one round trip instead of one per row."""
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        text, _ = dialect.to_postgres(sql, rowid=False)
        types = await self._types(text)
        args = [[dialect.adapt(v, t) for v, t in zip(r, types, strict=True)] for r in rows]
        try:
            await self.raw.executemany(text, args)
        except asyncpg.PostgresError as exc:
            raise _sqlite_like(exc) from exc

    async def run(self, sql: str, params: Sequence[Any]) -> Cursor:
        text, returns = dialect.to_postgres(sql)
        args = await self._adapt(text, params)
        try:
            if returns:
                rows = await self.raw.fetch(text, *args)
                insert = text.lstrip()[:6].upper() == "INSERT"
                lastrowid = int(rows[0][0]) if insert and rows else None
                return Cursor(rows, len(rows), lastrowid)
            status = await self.raw.execute(text, *args)
        except asyncpg.PostgresError as exc:
            raise _sqlite_like(exc) from exc
        last = status.rsplit(" ", 1)[-1]
        return Cursor([], int(last) if last.isdigit() else -1, None)

    async def _adapt(self, text: str, params: Sequence[Any]) -> list[Any]:
        if not params:
            return []
        types = await self._types(text)
        return [dialect.adapt(v, t) for v, t in zip(params, types, strict=True)]

    async def _types(self, text: str) -> tuple[str, ...]:
        """The parameter types PostgreSQL infers for a statement (once per statement)."""
        types = _param_types.get(text)
        if types is None:
            try:
                stmt = await self.raw.prepare(text)
            except asyncpg.PostgresError as exc:
                raise _sqlite_like(exc) from exc
            types = _param_types[text] = tuple(t.name for t in stmt.get_parameters())
        return types


def _sqlite_like(exc: asyncpg.PostgresError) -> Exception:
    """The sqlite3 error class the callers already handle (a unique key hit, bad SQL)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sqlite3.IntegrityError(str(exc))
    return sqlite3.DatabaseError(f"{type(exc).__name__}: {exc}")


async def _keep_session(raw: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs beyond asyncpg's rollback of an open
    transaction: nothing. asyncpg's default reset (unlock all advisory locks, RESET ALL,
    ...) is one more round trip per pooled use, every read's; nothing here sets session
    state, and the session locks (`job_lock`, `migration_lock`) unlock themselves."""


async def _setup(raw: asyncpg.Connection) -> None:
    await raw.set_type_codec("numeric", encoder=str, decoder=dialect.numeric,
                             schema="pg_catalog", format="text")


class PostgresDatabase:
    """An open coordinator database on PostgreSQL; `await open_postgres(url)`."""

    dialect = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool):
        self.path = redact(url)
        self.url = url
        self.pool = pool

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One atomic change: commits on success, rolls back on any exception."""
        async with self.pool.acquire() as raw:
            # BEGIN and the write lock in one round trip (the simple query protocol takes
            # both statements at once): writes are many small transactions
            await raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            try:
                yield Connection(raw)
            except BaseException:
                await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        """One pooled connection for a caller's own locks (not a transaction)."""
        async with self.pool.acquire() as raw:
            yield Connection(raw)

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[None]:
        """Held by one coordinator at a time while it brings the schema up to date."""
        async with self.pool.acquire() as raw:
            await raw.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
            try:
                yield
            finally:
                await raw.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)

    @asynccontextmanager
    async def job_lock(self, name: str) -> AsyncIterator[bool]:
        """True while this coordinator holds job `name`'s advisory lock (then it runs the
        job), False when another coordinator holds it. A session lock: the server frees it
        when the holder's connection dies, so another coordinator takes the job over."""
        key = JOB_LOCKS + zlib.crc32(name.encode())
        async with self.pool.acquire() as raw:
            got = bool(await raw.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield got
            finally:
                if got:
                    await raw.execute("SELECT pg_advisory_unlock($1)", key)

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        async with self.pool.acquire() as raw:
            return await Connection(raw).execute_fetchall(sql, params)

    async def one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]


async def open_postgres(url: str) -> PostgresDatabase:
    """A pool on `url`; the caller migrates it (under `migration_lock`)."""
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, init=_setup,
                                         reset=_keep_session,
                                         statement_cache_size=STATEMENT_CACHE)
    except (OSError, asyncpg.PostgresError, ValueError) as exc:
        raise P2pbakError(f"cannot connect to {redact(url)}: {exc}: check the URL "
                          "(postgresql://USER@HOST[:PORT]/DB) and that the server is up") from None
    return PostgresDatabase(url, pool)
