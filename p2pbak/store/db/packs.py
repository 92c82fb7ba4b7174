"""Packs, their fragment placements and the store grants behind them (SQL only).

A grant records that the pack's owner was given a store ticket for one fragment on one
peer; a commit may only name fragments that have a grant, so an owner cannot claim
placements it was never allowed to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from p2pbak.errors import Conflict, NotGranted
from p2pbak.store.db.database import (
    Database,
    batches,
    fetch_all,
    fetch_one,
    marks,
    now,
)

GRANT_SLACK = 3600  # seconds a grant outlives its ticket, for a slow upload's commit


@dataclass(frozen=True)
class Fragment:
    index: int
    fragment_id: str
    size: int
    peer_id: str
    merkle_root: str | None = None  # sent at commit; audits check proofs against it


@dataclass(frozen=True)
class Pack:
    id: str
    k: int
    n: int
    repair: int
    success: int
    length: int
    created: int
    fragments: tuple[Fragment, ...]

    def same_content(self, other: Pack) -> bool:
        return ((self.id, self.k, self.n, self.repair, self.success, self.length)
                == (other.id, other.k, other.n, other.repair, other.success, other.length)
                and sorted(map(_fields, self.fragments)) == sorted(map(_fields, other.fragments)))


def _fields(f: Fragment) -> tuple[int, str, int, str]:
    return f.index, f.fragment_id, f.size, f.peer_id


async def add_grants(db: Database, user: str, pack_id: str, fragments: Sequence[Fragment],
                     ticket_expiry: int) -> None:
    expires = ticket_expiry + GRANT_SLACK
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO grants(user_name, pack_id, idx, fragment_id, size, peer_id, expires)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(user_name, pack_id, fragment_id, peer_id)"
            " DO UPDATE SET idx = excluded.idx,"
            " size = excluded.size, expires = excluded.expires",
            [(user, pack_id, f.index, f.fragment_id, f.size, f.peer_id, expires)
             for f in fragments])


async def commit(db: Database, user: str, machine_id: str, pack: Pack) -> bool:
    """Record `pack` and its stored fragments atomically. True if new, False if it was
    already committed with the same content; Conflict if with other content,
    NotGranted if a fragment lacks a grant."""
    async with db.transaction() as conn:
        old = await _load(conn, user, pack.id)
        if old is not None:
            if old.same_content(pack):
                return False
            raise Conflict(pack.id)
        await _check_grants(conn, user, pack)
        cur = await conn.execute(
            "INSERT INTO packs(user_name, id, machine_id, k, n, repair, success, length, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user, pack.id, machine_id, pack.k, pack.n, pack.repair, pack.success, pack.length,
             now()))
        await conn.executemany(
            "INSERT INTO fragments(pack_pk, idx, fragment_id, size, peer_id, stored, merkle_root)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(cur.lastrowid, f.index, f.fragment_id, f.size, f.peer_id, now(), f.merkle_root)
             for f in pack.fragments])
        # granted but not committed (slow tail cancelled, moved to a spare): garbage
        await queue_unused_grants(conn, user, pack.id)
        await conn.execute("DELETE FROM grants WHERE user_name = ? AND pack_id = ?",
                           (user, pack.id))
    return True


async def _check_grants(conn: aiosqlite.Connection, user: str, pack: Pack) -> None:
    granted = {(int(r[0]), r[1], int(r[2]), r[3]) for r in await fetch_all(
        conn, "SELECT idx, fragment_id, size, peer_id FROM grants WHERE user_name = ?"
        " AND pack_id = ?", (user, pack.id))}  # one query for the pack, not one per fragment
    for f in pack.fragments:
        if (f.index, f.fragment_id, f.size, f.peer_id) not in granted:
            raise NotGranted(f"fragment {f.index} on peer {f.peer_id}")


_PACK_SQL = ("SELECT pk, id, k, n, repair, success, length, created FROM packs"
             " WHERE user_name = ? AND id = ?")
_FRAGMENTS_SQL = ("SELECT idx, fragment_id, size, peer_id FROM fragments WHERE pack_pk = ?"
                  " ORDER BY idx")


def _pack(row: aiosqlite.Row, frags: list[aiosqlite.Row]) -> Pack:
    return Pack(*row[1:], fragments=tuple(Fragment(*f) for f in frags))


async def _load(conn: aiosqlite.Connection, user: str, pack_id: str) -> Pack | None:
    row = await fetch_one(conn, _PACK_SQL, (user, pack_id))
    return None if row is None else _pack(row, await fetch_all(conn, _FRAGMENTS_SQL, (row[0],)))


async def get(db: Database, user: str, pack_id: str) -> Pack | None:
    """The user's pack with its placements (None for another user's or unknown id)."""
    row = await db.one(_PACK_SQL, (user, pack_id))
    return None if row is None else _pack(row, await db.all(_FRAGMENTS_SQL, (row[0],)))


async def present(db: Database, user: str, pack_ids: Sequence[str]) -> list[str]:
    """Those of `pack_ids` the user has committed, in the order asked."""
    found: set[str] = set()
    ids = list(dict.fromkeys(pack_ids))
    for part in batches(ids):
        rows = await db.all(f"SELECT id FROM packs WHERE user_name = ? AND id IN ({marks(part)})",
                            [user, *part])
        found.update(r[0] for r in rows)
    return [p for p in ids if p in found]


async def totals(db: Database, user: str) -> tuple[int, int]:
    """(number of packs, sum of their lengths) for the user."""
    row = await db.one("SELECT count(*), coalesce(sum(length), 0) FROM packs"
                       " WHERE user_name = ?", (user,))
    assert row is not None
    return int(row[0]), int(row[1])


# -- store tickets never committed ----------------------------------------------------

NOT_PLACED = ("NOT EXISTS (SELECT 1 FROM fragments f WHERE f.peer_id = g.peer_id"
               " AND f.fragment_id = g.fragment_id)")


async def queue_unused_grants(conn: aiosqlite.Connection, user: str, pack_id: str) -> None:
    """At a pack's commit (inside its transaction): fragments granted but not committed
    (the cancelled slow tail, a fragment moved to a spare) are garbage on their peers."""
    await conn.execute(
        "INSERT INTO deletions(peer_id, fragment_id, size, queued)"
        " SELECT g.peer_id, g.fragment_id, g.size, ? FROM grants g"
        f" WHERE g.user_name = ? AND g.pack_id = ? AND {NOT_PLACED}"
        " ON CONFLICT(peer_id, fragment_id) DO NOTHING", (now(), user, pack_id))
