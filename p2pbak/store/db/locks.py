"""Repository locks per user, across machines (SQL only), as restic's: backup, restore
and check hold a shared lock, prune an exclusive one, so prune never drops packs a running
backup has stored or will reuse, nor packs a running restore still reads. A holder is one
run of a command (its random id; a machine's id for clients that send none). A lock lapses
unless its holder renews it, so a killed client blocks nobody for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.store.db.database import Database, fetch_all, now


@dataclass(frozen=True)
class Holder:
    machine: str  # the machine's name
    exclusive: bool
    expires: int
    command: str = ""  # what it runs ("restore", "prune"), '' if it did not say


@dataclass(frozen=True)
class Request:
    """Who asks for a lock: the machine, the run (holder id) and its command."""

    user: str
    machine_id: str
    holder: str
    command: str = ""
    # the caller holds this machine's local lock (store/machinelock), which every backup
    # and prune here holds: this machine's other backup/prune holders are dead runs
    machine_locked: bool = False

# the commands that run under the machine's local lock
MACHINE_LOCKED = ("backup", "prune")


async def take(db: Database, req: Request, exclusive: bool, ttl: int) -> Holder | None:
    """Take or renew this holder's lock; the conflicting holder instead, if any.

    An exclusive lock conflicts with any other holder's lock, a shared one only with
    another holder's exclusive lock.
    """
    t = now()
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM repo_locks WHERE expires < ?", (t,))
        if req.machine_locked:  # a killed backup or prune of ours blocks nobody
            await conn.execute(
                "DELETE FROM repo_locks WHERE user_name = ? AND machine_id = ? AND holder != ?"
                f" AND command IN ({', '.join('?' * len(MACHINE_LOCKED))})",
                (req.user, req.machine_id, req.holder, *MACHINE_LOCKED))
        rows = await fetch_all(
            conn, "SELECT m.name, l.exclusive, l.expires, l.command FROM repo_locks l"
            " JOIN machines m ON m.id = l.machine_id WHERE l.user_name = ?"
            " AND l.holder != ? AND (l.exclusive = 1 OR ? = 1) LIMIT 1",
            (req.user, req.holder, int(exclusive)))
        if rows:
            return Holder(str(rows[0][0]), bool(rows[0][1]), int(rows[0][2]),
                          str(rows[0][3]))
        await conn.execute(
            "INSERT INTO repo_locks(user_name, machine_id, holder, command, exclusive,"
            " expires) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_name, holder) DO UPDATE"
            " SET exclusive = excluded.exclusive, expires = excluded.expires",
            (req.user, req.machine_id, req.holder, req.command, int(exclusive), t + ttl))
    return None


async def release(db: Database, req: Request) -> None:
    """Drop the holder's lock (only the caller's machine's: a holder id is no secret)."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM repo_locks WHERE user_name = ? AND holder = ?"
                           " AND machine_id = ?", (req.user, req.holder, req.machine_id))
