"""Users, their machines, wrapped master keys and server settings (SQL only, no hashing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from p2pbak.errors import Conflict
from p2pbak.store.db.database import Database, batches, fetch_one, marks, now


@dataclass(frozen=True)
class Machine:
    id: str
    user: str
    name: str
    secret_hash: bytes


@dataclass(frozen=True)
class Login:
    salt: bytes
    login_hash: bytes
    login_hash_key: bytes


async def create_user(db: Database, *, user: str, salt: bytes, login_hash: bytes,
                      login_hash_key: bytes, keyfile: bytes, machine_id: str,
                      machine_name: str, secret_hash: bytes, email: str | None = None) -> None:
    """The user and its first machine, atomically; Conflict if the name is taken."""
    t = now()
    async with db.transaction() as conn:
        if await fetch_one(conn, "SELECT 1 FROM users WHERE name = ?", (user,)):
            raise Conflict(user)
        await conn.execute(
            "INSERT INTO users(name, salt, login_hash, login_hash_key, keyfile, created, email)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user, salt, login_hash, login_hash_key, keyfile, t, email))
        await _insert_machine(conn, machine_id, user, machine_name, secret_hash, t)


async def add_machine(db: Database, *, user: str, machine_id: str, machine_name: str,
                      secret_hash: bytes) -> None:
    async with db.transaction() as conn:
        await _insert_machine(conn, machine_id, user, machine_name, secret_hash, now())


async def _insert_machine(conn: aiosqlite.Connection, machine_id: str, user: str, name: str,
                          secret_hash: bytes, t: int) -> None:
    await conn.execute(
        "INSERT INTO machines(id, user_name, name, secret_hash, created) VALUES (?, ?, ?, ?, ?)",
        (machine_id, user, name, secret_hash, t))


async def login(db: Database, user: str) -> Login | None:
    row = await db.one("SELECT salt, login_hash, login_hash_key FROM users WHERE name = ?",
                       (user,))
    return None if row is None else Login(row[0], row[1], row[2])


async def machine(db: Database, machine_id: str) -> Machine | None:
    return (await machines(db, [machine_id]))[0]


async def machines(db: Database, machine_ids: Sequence[str]) -> list[Machine | None]:
    """Each id's machine (None: unknown), in a statement per 500 ids: the credentials of
    many requests arriving at once are looked up together (coordinator.groupcommit)."""
    found: dict[str, Machine] = {}
    for part in batches(machine_ids):
        for row in await db.all("SELECT id, user_name, name, secret_hash FROM machines"
                                f" WHERE id IN ({marks(part)})", part):
            found[row[0]] = Machine(row[0], row[1], row[2], row[3])
    return [found.get(m) for m in machine_ids]


async def email(db: Database, user: str) -> str | None:
    """The address the user gave for alerts (None: none given)."""
    return await db.scalar("SELECT email FROM users WHERE name = ?", (user,))


async def set_email(db: Database, user: str, address: str | None) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE users SET email = ? WHERE name = ?", (address, user))


async def keyfile(db: Database, user: str) -> bytes | None:
    return await db.scalar("SELECT keyfile FROM users WHERE name = ?", (user,))


async def set_keyfile(db: Database, user: str, blob: bytes,
                      login_update: Login | None = None) -> None:
    """Replace the wrapped key (and, on a passphrase change, the login key with it)."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE users SET keyfile = ? WHERE name = ?", (blob, user))
        if login_update is not None:
            await conn.execute(
                "UPDATE users SET salt = ?, login_hash = ?, login_hash_key = ? WHERE name = ?",
                (login_update.salt, login_update.login_hash, login_update.login_hash_key, user))


async def setting(db: Database, name: str) -> bytes | None:
    return await db.scalar("SELECT value FROM settings WHERE name = ?", (name,))


async def setting_or_create(db: Database, name: str, value: bytes) -> bytes:
    """The stored value of `name`, storing `value` first if there is none."""
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO settings(name, value) VALUES (?, ?)"
                           " ON CONFLICT(name) DO NOTHING", (name, value))
        row = await fetch_one(conn, "SELECT value FROM settings WHERE name = ?", (name,))
    return value if row is None else bytes(row[0])
