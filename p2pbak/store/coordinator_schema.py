"""Versioned schema of the coordinator database.

`MIGRATIONS[i]` brings the schema from version i to i+1: either a tuple of SQL statements or
an async function of the writer connection. Each runs in its own transaction together with
its row in `schema_version`, so a crash leaves the database at a whole version. Adding a
feature (bank, repair tasks, audits, price history) is appending one entry; never edit or
reorder an entry that has shipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import aiosqlite

from p2pbak.errors import P2pbakError
from p2pbak.store.coordinator_db import Database, now

Migration = Sequence[str] | Callable[[aiosqlite.Connection], Awaitable[None]]

# Version 1: identity, peers, packs and placements, snapshot/index blobs, heartbeats.
# Sizes are integer bytes; times are unix seconds; ids are lowercase hex text.
_V1: tuple[str, ...] = (
    """CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL)""",
    """CREATE TABLE users (
        name TEXT PRIMARY KEY,
        salt BLOB NOT NULL,            -- the client's scrypt salt for the login key
        login_hash BLOB NOT NULL,      -- keyed BLAKE3 of the login key
        login_hash_key BLOB NOT NULL,  -- per-user key of that hash
        keyfile BLOB NOT NULL,         -- wrapped master key, opaque
        created INTEGER NOT NULL)""",
    """CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        created INTEGER NOT NULL)""",
    "CREATE INDEX machines_user ON machines(user_name)",
    """CREATE TABLE peers (
        id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        subnet TEXT NOT NULL,
        space INTEGER NOT NULL,
        upload INTEGER NOT NULL,
        download INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL DEFAULT 0,
        free_bytes INTEGER NOT NULL DEFAULT 0,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER,             -- last heartbeat, NULL before the first
        availability REAL NOT NULL DEFAULT 0.5,
        reputation REAL NOT NULL DEFAULT 1.0,
        state TEXT NOT NULL DEFAULT 'active')""",
    "CREATE INDEX peers_live ON peers(state, last_seen)",
    """CREATE TABLE heartbeats (
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL,
        free_bytes INTEGER NOT NULL)""",
    "CREATE INDEX heartbeats_peer_at ON heartbeats(peer_id, at)",
    """CREATE TABLE grants (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        pack_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, pack_id, fragment_id, peer_id))""",
    "CREATE INDEX grants_expires ON grants(expires)",
    """CREATE TABLE packs (
        pk INTEGER PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        machine_id TEXT REFERENCES machines(id) ON DELETE SET NULL,
        k INTEGER NOT NULL,
        n INTEGER NOT NULL,
        repair INTEGER NOT NULL,
        success INTEGER NOT NULL,
        length INTEGER NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (user_name, id))""",
    """CREATE TABLE fragments (
        pack_pk INTEGER NOT NULL REFERENCES packs(pk) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        peer_id TEXT NOT NULL REFERENCES peers(id),
        stored INTEGER NOT NULL,
        PRIMARY KEY (pack_pk, idx),
        UNIQUE (pack_pk, peer_id))""",
    "CREATE INDEX fragments_peer ON fragments(peer_id)",
    """CREATE TABLE blobs (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        kind TEXT NOT NULL,            -- 'snapshot' | 'index'
        id TEXT NOT NULL,
        blob BLOB NOT NULL,            -- encrypted, opaque
        size INTEGER NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (user_name, kind, id))""",
)

def _bank_v() -> tuple[str, ...]:
    from p2pbak.store.bank import MIGRATION

    return MIGRATION


MIGRATIONS: list[Migration] = [_V1]
MIGRATIONS.append(_bank_v())  # the bank: accounts, ledger, price history, alerts


def _repair_v() -> tuple[str, ...]:
    from p2pbak.store.repair import MIGRATION

    return MIGRATION


MIGRATIONS.append(_repair_v())  # repair, audits, testing: tasks, audits, availability samples


def _garbage_v() -> tuple[str, ...]:
    from p2pbak.store.garbage import MIGRATION

    return MIGRATION


MIGRATIONS.append(_garbage_v())  # delete lists: fragments suppliers should drop


def _locks_v() -> tuple[str, ...]:
    from p2pbak.store.locks import MIGRATION

    return MIGRATION


MIGRATIONS.append(_locks_v())  # repository locks across a user's machines (backup, prune)

# work allocation moves fragments toward low balances (a flagged fragment is rebuilt on a
# new supplier like a leaving peer's); each price row keeps the overheads its q came from
MIGRATIONS.append((
    "ALTER TABLE fragments ADD COLUMN moving INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE price_history ADD COLUMN overheads TEXT",
))



def _claims_v() -> tuple[str, ...]:
    from p2pbak.store.claims import MIGRATION

    return MIGRATION


MIGRATIONS.append(_claims_v())  # proof before pay: plans, claims, acknowledgements, evidence

async def schema_version(db: Database) -> int:
    exists = await db.scalar(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'")
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
