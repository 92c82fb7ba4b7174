"""Delete lists and graceful exit (SQL only).

A fragment a supplier holds but nothing needs any more goes on that supplier's delete list:
the fragments of packs a user dropped (prune), and fragments stored under store tickets
that were never committed (a crashed or cancelled upload). Suppliers fetch their list,
delete, and confirm; a row whose fragment is placed on that peer again is never handed out.
A peer that leaves for good is marked `leaving`: placement stops choosing it and the
repair checker moves its fragments; it has left once no placement is on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from p2pbak.store.db.database import Database, batches, fetch_all, marks, now
from p2pbak.store.db.peers import ACTIVE, OFFLINE
from p2pbak.store.db.tasks import LEAVING, LEFT, TEST_FETCH, TEST_STORE

KNOWN_STATES = (ACTIVE, OFFLINE, LEAVING)  # a fragment there can still be fetched

MIGRATION: tuple[str, ...] = (
    """CREATE TABLE deletions (
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        queued INTEGER NOT NULL,
        PRIMARY KEY (peer_id, fragment_id))""",
)


@dataclass(frozen=True)
class Dropped:
    packs: int = 0
    fragments: int = 0
    bytes: int = 0  # pack bytes (what the owner was billed for)
    fragment_bytes: int = 0  # bytes the suppliers will free


@dataclass(frozen=True)
class PackRow:
    id: str
    length: int
    created: int


@dataclass(frozen=True)
class PackPlacement:
    id: str
    k: int
    n: int
    placed: int  # fragments on peers that still exist and may serve them
    online: int  # of those, on peers online now


# -- prune -----------------------------------------------------------------------------

async def user_packs(db: Database, user: str) -> list[PackRow]:
    rows = await db.all("SELECT id, length, created FROM packs WHERE user_name = ?"
                        " ORDER BY created, id", (user,))
    return [PackRow(*r) for r in rows]


async def drop_packs(db: Database, user: str, pack_ids: Sequence[str]) -> Dropped:
    """In one transaction: queue every fragment of the user's packs for deletion on its
    supplier and remove the packs (placements, open tasks). Unknown ids are ignored."""
    t = now()
    packs = fragments = size = fsize = 0
    async with db.transaction() as conn:
        for part in batches(pack_ids):
            rows = await fetch_all(conn, f"SELECT pk, length FROM packs WHERE user_name = ?"
                                   f" AND id IN ({marks(part)})", [user, *part])
            pks = [r[0] for r in rows]
            if not pks:
                continue
            counted = await fetch_all(conn, f"SELECT count(*), coalesce(sum(size), 0)"
                                      f" FROM fragments WHERE pack_pk IN ({marks(pks)})", pks)
            await conn.execute(
                "INSERT INTO deletions(peer_id, fragment_id, size, queued)"
                " SELECT peer_id, fragment_id, size, ? FROM fragments"
                f" WHERE pack_pk IN ({marks(pks)}) ON CONFLICT(peer_id, fragment_id)"
                " DO NOTHING", [t, *pks])
            await conn.execute(f"DELETE FROM packs WHERE pk IN ({marks(pks)})", pks)
            packs += len(pks)
            size += sum(int(r[1]) for r in rows)
            fragments += int(counted[0][0])
            fsize += int(counted[0][1])
    return Dropped(packs, fragments, size, fsize)


# -- store tickets never committed ----------------------------------------------------

_NOT_PLACED = ("NOT EXISTS (SELECT 1 FROM fragments f WHERE f.peer_id = g.peer_id"
               " AND f.fragment_id = g.fragment_id)")


async def expire_grants(db: Database, t: int | None = None) -> int:
    """Grants past their expiry: a fragment stored under one that was never committed is
    garbage on its supplier, so it goes on the delete list; the grants go. Returns the
    number of fragments queued."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO deletions(peer_id, fragment_id, size, queued)"
            " SELECT g.peer_id, g.fragment_id, g.size, ? FROM grants g"
            f" WHERE g.expires < ? AND {_NOT_PLACED}"
            " ON CONFLICT(peer_id, fragment_id) DO NOTHING", (at, at))
        await conn.execute("DELETE FROM grants WHERE expires < ?", (at,))
    return cur.rowcount


async def queue_unused_grants(conn: aiosqlite.Connection, user: str, pack_id: str) -> None:
    """At a pack's commit (inside its transaction): fragments granted but not committed
    (the cancelled slow tail, a fragment moved to a spare) are garbage on their peers."""
    await conn.execute(
        "INSERT INTO deletions(peer_id, fragment_id, size, queued)"
        " SELECT g.peer_id, g.fragment_id, g.size, ? FROM grants g"
        f" WHERE g.user_name = ? AND g.pack_id = ? AND {_NOT_PLACED}"
        " ON CONFLICT(peer_id, fragment_id) DO NOTHING", (now(), user, pack_id))


# -- delete lists ----------------------------------------------------------------------

async def pending(db: Database, peer_id: str, limit: int) -> list[tuple[str, int]]:
    """(fragment id, size) the peer should delete; rows for fragments placed on it again
    are dropped first, so a live placement is never deleted."""
    async with db.transaction() as conn:
        await conn.execute(
            "DELETE FROM deletions WHERE peer_id = ? AND fragment_id IN"
            " (SELECT fragment_id FROM fragments WHERE peer_id = ?)", (peer_id, peer_id))
        rows = await fetch_all(conn, "SELECT fragment_id, size FROM deletions WHERE peer_id = ?"
                               " ORDER BY queued, fragment_id LIMIT ?", (peer_id, limit))
    return [(r[0], int(r[1])) for r in rows]


async def confirm(db: Database, peer_id: str, fragment_ids: Sequence[str]) -> int:
    """The peer deleted these: off its list."""
    done = 0
    async with db.transaction() as conn:
        for part in batches(fragment_ids):
            cur = await conn.execute(f"DELETE FROM deletions WHERE peer_id = ? AND fragment_id"
                                     f" IN ({marks(part)})", [peer_id, *part])
            done += cur.rowcount
    return done


# -- check -----------------------------------------------------------------------------

async def placements(db: Database, user: str, pack_ids: Sequence[str],
                     online_since: int) -> list[PackPlacement]:
    """The user's packs among `pack_ids` with their usable and online fragment counts."""
    out: list[PackPlacement] = []
    for part in batches(pack_ids):
        rows = await db.all(
            "SELECT p.id, p.k, p.n,"
            f" coalesce(sum(pe.state IN ({marks(KNOWN_STATES)})), 0),"
            " coalesce(sum(pe.state IN (?, ?) AND pe.last_seen >= ?), 0)"
            " FROM packs p LEFT JOIN fragments f ON f.pack_pk = p.pk"
            " LEFT JOIN peers pe ON pe.id = f.peer_id"
            f" WHERE p.user_name = ? AND p.id IN ({marks(part)}) GROUP BY p.pk",
            [*KNOWN_STATES, ACTIVE, LEAVING, online_since, user, *part])
        out += [PackPlacement(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
    return out


# -- graceful exit ---------------------------------------------------------------------

@dataclass(frozen=True)
class Leave:
    state: str
    fragments: int  # placements still on the peer
    bytes: int


async def begin_leave(db: Database, peer_id: str) -> str | None:
    """Mark the peer leaving (from active or offline); its state after, None if unknown.
    Test fragments stored on it (availability testing) go on its delete list."""
    async with db.transaction() as conn:
        cur = await conn.execute("UPDATE peers SET state = ? WHERE id = ? AND state IN (?, ?)",
                                 (LEAVING, peer_id, ACTIVE, OFFLINE))
        if cur.rowcount:
            await conn.execute(
                "INSERT INTO deletions(peer_id, fragment_id, size, queued)"
                " SELECT DISTINCT target, fragment_id, size, ? FROM tasks"
                " WHERE target = ? AND kind IN (?, ?) AND fragment_id IS NOT NULL"
                " ON CONFLICT(peer_id, fragment_id) DO NOTHING",
                (now(), peer_id, TEST_STORE, TEST_FETCH))
        rows = await fetch_all(conn, "SELECT state FROM peers WHERE id = ?", (peer_id,))
    return str(rows[0][0]) if rows else None


async def leave_progress(db: Database, peer_id: str) -> Leave | None:
    """How far the peer's exit is; once nothing is placed on a leaving peer it has left."""
    async with db.transaction() as conn:
        rows = await fetch_all(conn, "SELECT state FROM peers WHERE id = ?", (peer_id,))
        if not rows:
            return None
        counted = await fetch_all(conn, "SELECT count(*), coalesce(sum(size), 0)"
                                  " FROM fragments WHERE peer_id = ?", (peer_id,))
        frags, size = int(counted[0][0]), int(counted[0][1])
        state = str(rows[0][0])
        if state == LEAVING and frags == 0:
            await conn.execute("UPDATE peers SET state = ? WHERE id = ?", (LEFT, peer_id))
            state = LEFT
    return Leave(state, frags, size)
