"""Repository locks per user, across machines (SQL only), as restic's: a backup holds a
shared lock, prune an exclusive one, so prune never drops packs a running backup of
another machine of the same user has stored or will reuse. A lock lapses unless its
holder renews it, so a killed client blocks nobody for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.store.db.database import Database, fetch_all, now

MIGRATION: tuple[str, ...] = (
    """CREATE TABLE repo_locks (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
        exclusive INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, machine_id))""",
)


@dataclass(frozen=True)
class Holder:
    machine: str  # the machine's name
    exclusive: bool
    expires: int


async def take(db: Database, user: str, machine_id: str, exclusive: bool,
               ttl: int) -> Holder | None:
    """Take or renew this machine's lock; the conflicting holder instead, if any.

    An exclusive lock conflicts with any other machine's lock, a shared one only with
    another machine's exclusive lock. One machine holds at most one lock (its latest).
    """
    t = now()
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM repo_locks WHERE expires < ?", (t,))
        rows = await fetch_all(
            conn, "SELECT m.name, l.exclusive, l.expires FROM repo_locks l"
            " JOIN machines m ON m.id = l.machine_id WHERE l.user_name = ?"
            " AND l.machine_id != ? AND (l.exclusive = 1 OR ? = 1) LIMIT 1",
            (user, machine_id, int(exclusive)))
        if rows:
            return Holder(str(rows[0][0]), bool(rows[0][1]), int(rows[0][2]))
        await conn.execute(
            "INSERT INTO repo_locks(user_name, machine_id, exclusive, expires)"
            " VALUES (?, ?, ?, ?) ON CONFLICT(user_name, machine_id) DO UPDATE SET"
            " exclusive = excluded.exclusive, expires = excluded.expires",
            (user, machine_id, int(exclusive), t + ttl))
    return None


async def release(db: Database, user: str, machine_id: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM repo_locks WHERE user_name = ? AND machine_id = ?",
                           (user, machine_id))
