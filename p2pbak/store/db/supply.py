"""What peers have proven and the caps they declared (SQL only): the inputs of the
proven-supply rule (p2pbak.market.proven). Each is one grouped query over all peers."""

from __future__ import annotations

from typing import Any

from p2pbak.market.proven import Caps, Proven
from p2pbak.store.db.database import Database, now

CAP_RETENTION = 90 * 86400  # seconds of cap history kept (longer than any hold window)


async def record_caps_in(conn: Any, peer_id: str, space: int | None, upload: int | None,
                         download: int | None) -> None:
    """Inside the caller's transaction: the caps now in force, and old history pruned."""
    t = now()
    await conn.execute("INSERT INTO cap_history(peer_id, at, space, upload, download)"
                       " VALUES (?, ?, ?, ?, ?)", (peer_id, t, space, upload, download))
    await conn.execute("DELETE FROM cap_history WHERE at < ?", (t - CAP_RETENTION,))


async def lowest_caps(db: Database, since: int) -> dict[str, Caps]:
    """Per peer the lowest of its current caps and those it set since `since` (NULL, no
    cap, is the highest: min() passes over it; a space of 0 is the lowest)."""
    rows = await db.all(
        "SELECT peer_id, min(space), min(upload), min(download) FROM ("
        " SELECT id AS peer_id, space, upload, download FROM peers"
        " UNION ALL SELECT peer_id, space, upload, download FROM cap_history WHERE at >= ?)"
        " caps GROUP BY peer_id", (since,))
    return {r[0]: Caps(*(None if v is None else int(v) for v in r[1:])) for r in rows}


async def proven(db: Database, since: int) -> dict[str, Proven]:
    """Per peer: bytes of its committed placements stored no later than its last audit,
    when that audit (the last one that reached it, judged on the coordinator's own
    evidence) passed; bytes it served and received since `since` that the receiver
    acknowledged or a commit recorded."""
    space = await db.all(
        "WITH last AS (SELECT peer_id, max(id) AS id FROM audits WHERE outcome != 'offline'"
        " GROUP BY peer_id)"
        " SELECT f.peer_id, sum(f.size) FROM fragments f JOIN last l ON l.peer_id = f.peer_id"
        " JOIN audits a ON a.id = l.id WHERE a.outcome = 'ok' AND f.stored <= a.at"
        " GROUP BY f.peer_id")
    up = await db.all("SELECT peer_id, sum(size) FROM acks WHERE at >= ? GROUP BY peer_id",
                      (since,))
    down = await db.all(
        "SELECT peer, sum(size) FROM (SELECT machine_id AS peer, size FROM acks WHERE at >= ?"
        " UNION ALL SELECT peer_id AS peer, size FROM fragments WHERE stored >= ?) moved"
        " GROUP BY peer", (since, since))
    out: dict[str, dict[str, int]] = {}
    for name, rows in (("space", space), ("upload", up), ("download", down)):
        for peer_id, total in rows:
            out.setdefault(peer_id, {})[name] = int(total)
    return {peer_id: Proven(**values) for peer_id, values in out.items()}
