"""Per-user encrypted blobs: snapshot records and index blobs (SQL only).

Blobs are immutable: putting the same id again with the same bytes is a no-op, with other
bytes a Conflict. Every query is scoped to one user, so another user's id is simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.store.db.database import Conflict, Database, fetch_one, now

KINDS = frozenset({"snapshot", "index"})


@dataclass(frozen=True)
class BlobInfo:
    id: str
    created: int
    size: int


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown blob kind {kind!r}")
    return kind


async def put(db: Database, user: str, kind: str, blob_id: str, blob: bytes) -> bool:
    """Store a blob; True if new, False if the identical blob was there already."""
    async with db.transaction() as conn:
        row = await fetch_one(conn, "SELECT blob FROM blobs WHERE user_name = ? AND kind = ?"
                              " AND id = ?", (user, _kind(kind), blob_id))
        if row is not None:
            if bytes(row[0]) == blob:
                return False
            raise Conflict(blob_id)
        await conn.execute("INSERT INTO blobs(user_name, kind, id, blob, size, created)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           (user, kind, blob_id, blob, len(blob), now()))
    return True


async def get(db: Database, user: str, kind: str, blob_id: str) -> bytes | None:
    value = await db.scalar("SELECT blob FROM blobs WHERE user_name = ? AND kind = ? AND id = ?",
                            (user, _kind(kind), blob_id))
    return None if value is None else bytes(value)


async def listing(db: Database, user: str, kind: str) -> list[BlobInfo]:
    rows = await db.all("SELECT id, created, size FROM blobs WHERE user_name = ? AND kind = ?"
                        " ORDER BY created, id", (user, _kind(kind)))
    return [BlobInfo(*r) for r in rows]


async def delete(db: Database, user: str, kind: str, blob_id: str) -> bool:
    async with db.transaction() as conn:
        cur = await conn.execute("DELETE FROM blobs WHERE user_name = ? AND kind = ? AND id = ?",
                                 (user, _kind(kind), blob_id))
    return cur.rowcount > 0


async def count(db: Database, user: str, kind: str) -> int:
    return int(await db.scalar("SELECT count(*) FROM blobs WHERE user_name = ? AND kind = ?",
                               (user, _kind(kind))))
