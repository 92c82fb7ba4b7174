"""Peers (each machine's supplier agent), their heartbeats and liveness (SQL only)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from p2pbak.store.db.database import Database, batches, fetch_all, marks, now, write_many
from p2pbak.store.db.supply import record_caps_in


class PeerState(StrEnum):
    """A peer's state (the `peers.state` column). Heartbeats move offline → active; the
    availability sweep moves active → offline, and so does a stopping agent's sign-off.
    Later states are never changed by a heartbeat: disqualified (failed its audits),
    leaving (graceful exit: its fragments are moved, it still serves them), left."""

    ACTIVE = "active"
    OFFLINE = "offline"
    DISQUALIFIED = "disqualified"
    LEAVING = "leaving"
    LEFT = "left"


ACTIVE, OFFLINE, DISQUALIFIED, LEAVING, LEFT = PeerState
HEALTHY_STATES = (ACTIVE, OFFLINE)  # a fragment there counts until the departure timeout

HEARTBEAT_RETENTION = 30 * 86400  # seconds of heartbeat history kept for estimators

_PEER_COLUMNS = ("id, url, subnet, space, upload, download, stored_bytes, free_bytes, "
                 "first_seen, last_seen, availability, reputation, state")


@dataclass(frozen=True)
class Peer:
    id: str
    url: str
    subnet: str
    space: int | None  # caps: None = no cap (a space of 0 lends nothing)
    upload: int | None
    download: int | None
    stored_bytes: int
    free_bytes: int
    first_seen: int
    last_seen: int | None
    availability: float
    reputation: float
    state: str

    def with_free_bytes(self, free_bytes: int) -> Peer:
        """A copy with another free space: dataclasses.replace re-runs __init__ and is
        five times slower, which tells when it is done for every peer."""
        out = copy.copy(self)
        object.__setattr__(out, "free_bytes", free_bytes)
        return out

    def online(self, window: int, at: int | None = None) -> bool:
        t = now() if at is None else at
        return self.state == ACTIVE and self.last_seen is not None and self.last_seen >= t - window


async def announce(db: Database, *, peer_id: str, url: str, subnet: str, space: int | None,
                   upload: int | None, download: int | None) -> None:
    """Create or update this machine's peer with its address and caps."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO peers(id, url, subnet, space, upload, download, free_bytes, first_seen)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET url = excluded.url,"
            " subnet = excluded.subnet, space = excluded.space, upload = excluded.upload,"
            " download = excluded.download",
            (peer_id, url, subnet, space, upload, download, space or 0, now()))
        await record_caps_in(conn, peer_id, space, upload, download)


async def revive_left(db: Database, peer_id: str, availability: float) -> bool:
    """A peer that left comes back: active again with a new peer's state (`availability`:
    the prior, no history, nothing held or queued for deletion); False if it had
    not left. Its reputation stays: it is the coordinator's own evidence on this machine."""
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE peers SET state = ?, availability = ?, first_seen = ?, last_seen = NULL,"
            " stored_bytes = 0, free_bytes = 0 WHERE id = ? AND state = ?",
            (ACTIVE, availability, now(), peer_id, LEFT))
        if not cur.rowcount:
            return False
        for table in ("heartbeats", "availability_samples", "deletions"):
            await conn.execute(f"DELETE FROM {table} WHERE peer_id = ?", (peer_id,))
    return True


@dataclass(frozen=True)
class Beat:
    """One heartbeat as a peer sent it."""

    peer_id: str
    url: str
    subnet: str
    stored_bytes: int
    free_bytes: int


async def heartbeat(db: Database, *, peer_id: str, url: str, subnet: str, stored_bytes: int,
                    free_bytes: int) -> bool:
    """Record a heartbeat; False when the machine has not announced a peer."""
    return (await heartbeats(db, [Beat(peer_id, url, subnet, stored_bytes, free_bytes)]))[0]


async def heartbeats(db: Database, beats: Sequence[Beat]) -> list[bool]:
    """Record many heartbeats in one transaction (one commit for all: the write that limits
    a coordinator's heartbeat rate); per beat, False when its machine announced no peer."""
    t = now()
    async with db.transaction() as conn:
        known: set[str] = set()
        for part in batches(b.peer_id for b in beats):
            rows = await fetch_all(conn, f"SELECT id FROM peers WHERE id IN ({marks(part)})",
                                   part)
            known.update(str(r[0]) for r in rows)
        found = [b for b in beats if b.peer_id in known]
        if found:
            await write_many(
                conn, "UPDATE peers SET url = ?, subnet = ?, stored_bytes = ?, free_bytes = ?,"
                " last_seen = ?, state = CASE WHEN state = ? THEN ? ELSE state END"
                " WHERE id = ?", [(b.url, b.subnet, b.stored_bytes, b.free_bytes, t, OFFLINE,
                                   ACTIVE, b.peer_id) for b in found])
            await conn.executemany(
                "INSERT INTO heartbeats(peer_id, at, stored_bytes, free_bytes)"
                " VALUES (?, ?, ?, ?)",
                [(b.peer_id, t, b.stored_bytes, b.free_bytes) for b in found])
    return [b.peer_id in known for b in beats]


async def sign_off(db: Database, peer_id: str) -> bool:
    """A peer whose agent is stopping: active → offline now, as the sweep would mark it
    after the online window of silence. `last_seen` stays, so the departure timeout (and
    any repair) still counts from its last heartbeat; the next heartbeat makes it active.
    Other states stay. False when the machine has no peer."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE peers SET state = ? WHERE id = ? AND state = ?",
                           (OFFLINE, peer_id, ACTIVE))
        return bool(await fetch_all(conn, "SELECT 1 FROM peers WHERE id = ?", (peer_id,)))


async def get(db: Database, peer_id: str) -> Peer | None:
    row = await db.one(f"SELECT {_PEER_COLUMNS} FROM peers WHERE id = ?", (peer_id,))
    return None if row is None else Peer(*row)


async def many(db: Database, peer_ids: list[str]) -> dict[str, Peer]:
    if not peer_ids:
        return {}
    marks = ",".join("?" * len(peer_ids))
    rows = await db.all(f"SELECT {_PEER_COLUMNS} FROM peers WHERE id IN ({marks})", peer_ids)
    return {row[0]: Peer(*row) for row in rows}


async def online(db: Database, window: int, exclude: str | None = None) -> list[Peer]:
    """Active peers whose last heartbeat is within `window` seconds, minus `exclude`."""
    rows = await db.all(
        f"SELECT {_PEER_COLUMNS} FROM peers WHERE state = ? AND last_seen >= ? AND id != ?"
        " ORDER BY id", (ACTIVE, now() - window, exclude or ""))
    return [Peer(*row) for row in rows]


async def of_user(db: Database, user: str, window: int) -> list[Peer]:
    """The online active peers of `user`'s machines."""
    rows = await db.all(
        f"SELECT {', '.join('p.' + c.strip() for c in _PEER_COLUMNS.split(','))}"
        " FROM peers p JOIN machines m ON m.id = p.id WHERE m.user_name = ? AND p.state = ?"
        " AND p.last_seen >= ? ORDER BY p.id", (user, ACTIVE, now() - window))
    return [Peer(*row) for row in rows]


async def sweep(db: Database, window: int) -> int:
    """Mark active peers silent for longer than `window` offline; prune old heartbeats."""
    t = now()
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE peers SET state = ? WHERE state = ? AND coalesce(last_seen, first_seen) < ?",
            (OFFLINE, ACTIVE, t - window))
        await conn.execute("DELETE FROM heartbeats WHERE at < ?", (t - HEARTBEAT_RETENTION,))
    return cur.rowcount
