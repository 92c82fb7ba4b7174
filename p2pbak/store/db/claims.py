"""Proof before pay (SQL only): plans, suppliers' claims, receivers' acknowledgements.

* a **plan** row says the coordinator chose `peer_id` to hold a fragment of `fragment_size`
  bytes of one of `user_name`'s packs (`pack_id`, '' when the client did not say which);
  store tickets are signed only against a live plan;
* a **claim** is a supplier's receipt (a ticket it says it honoured) waiting for its
  evidence: the committed placement (store) or the receiver's acknowledgement (fetch);
  it pays when the evidence arrives, nothing once it expires;
* an **ack** is the receiving machine's word, under its own credentials, that it got the
  fragment a fetch ticket named and that its bytes matched the id;
* **evidence** keeps, for every receipt paid, what backed it (`admin audit` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from p2pbak.store.db.database import Database, batches, fetch_one, marks, now

PLAN_TTL = 3600  # seconds a plan stays good for tickets (a slow upload asks for spares)
RELAY_PREFIX = "relay:"  # a relay's pay is booked under "relay:" + its receipt's ref

@dataclass(frozen=True)
class Planned:
    peer_id: str
    fragment_size: int


async def add_plan(db: Database, user: str, pack_id: str, planned: Sequence[Planned]) -> None:
    t = now()
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM plans WHERE expires < ?", (t,))
        await conn.executemany(
            "INSERT INTO plans(user_name, pack_id, peer_id, fragment_size, expires)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_name, pack_id, peer_id, fragment_size)"
            " DO UPDATE SET expires = excluded.expires",
            [(user, pack_id, p.peer_id, p.fragment_size, t + PLAN_TTL) for p in planned])


async def unplanned(db: Database, user: str, pack_id: str,
                    wanted: Sequence[Planned]) -> list[Planned]:
    """Those of `wanted` no live plan of `user` covers (for this pack, or for any pack when
    the plan named none)."""
    t = now()
    out = []
    for w in wanted:
        hit = await db.scalar(
            "SELECT 1 FROM plans WHERE user_name = ? AND pack_id IN (?, '') AND peer_id = ?"
            " AND fragment_size = ? AND expires >= ?",
            (user, pack_id, w.peer_id, w.fragment_size, t))
        if not hit:
            out.append(w)
    return out


async def placed(db: Database, fragment_id: str, peer_id: str) -> int | None:
    """When `fragment_id` was placed on `peer_id` in a committed pack (the store's
    evidence), None if it is not."""
    value = await db.scalar("SELECT max(stored) FROM fragments WHERE fragment_id = ? AND"
                            " peer_id = ?", (fragment_id, peer_id))
    return None if value is None else int(value)


async def acked(db: Database, ticket_id: str, machine_id: str) -> bool:
    return bool(await db.scalar(
        "SELECT EXISTS (SELECT 1 FROM acks WHERE ticket_id = ? AND machine_id = ?)",
        (ticket_id, machine_id)))


async def served_to_someone(db: Database, fragment_id: str, peer_id: str) -> bool:
    """Whether a receiver acknowledged getting `fragment_id` from `peer_id`: proof the peer
    held it, so the store that put it there (a test transfer) happened."""
    return bool(await db.scalar(
        "SELECT EXISTS (SELECT 1 FROM acks WHERE fragment_id = ? AND peer_id = ?)",
        (fragment_id, peer_id)))


async def add_ack(db: Database, ticket_id: str, machine_id: str, peer_id: str,
                  fragment_id: str, size: int) -> bool:
    """Record an acknowledgement; False if that ticket was acknowledged before."""
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO acks(ticket_id, machine_id, peer_id, fragment_id, size, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (ticket_id, machine_id, peer_id, fragment_id, size, now()))
        return cur.rowcount == 1


async def keep_claim(db: Database, ticket_id: str, peer_id: str, fragment_id: str, wire: str,
                     expires: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO claims(ticket_id, peer_id, fragment_id, wire, expires)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (ticket_id, peer_id, fragment_id, wire, expires))


async def pending(db: Database, fragment_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(peer id, wire) of the live claims on these fragments; expired ones are dropped."""
    t = now()
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM claims WHERE expires < ?", (t,))
    out: list[tuple[str, str]] = []
    for part in batches(list(dict.fromkeys(fragment_ids))):
        rows = await db.all(f"SELECT peer_id, wire FROM claims WHERE fragment_id IN"
                            f" ({marks(part)})", part)
        out.extend((r[0], r[1]) for r in rows)
    return out


async def settle_in(conn: aiosqlite.Connection, ref: str, ticket_id: str, peer_id: str,
                    fragment_id: str, kind: str) -> None:
    """Inside the booking transaction: the claim is settled and its evidence kept."""
    await conn.execute("DELETE FROM claims WHERE ticket_id = ?", (ticket_id,))
    if await fetch_one(conn, "SELECT 1 FROM evidence WHERE ref = ?", (ref,)) is None:
        await conn.execute(
            "INSERT INTO evidence(ref, ticket_id, peer_id, fragment_id, kind, at)"
            " VALUES (?, ?, ?, ?, ?, ?)", (ref, ticket_id, peer_id, fragment_id, kind, now()))


async def unbacked_payments(db: Database) -> list[str]:
    """Refs of receipt payments (store/fetch/retrieval by ticket, and the relay pay booked
    with one) with no evidence, or whose acknowledgement is missing: what `admin audit`
    reports. A relay's pay is backed by its receipt's evidence; one without a booked receipt
    is unbacked (an evidence row alone is not a payment the relay rode on)."""
    cut = len(RELAY_PREFIX) + 1
    rows = await db.all(
        "SELECT t.ref FROM (SELECT id, ref, kind, CASE WHEN kind = 'relay'"
        f" THEN substr(ref, {cut}) ELSE ref END AS paid_ref FROM transactions"
        "  WHERE kind IN ('store', 'fetch', 'retrieval', 'relay')) t"
        " LEFT JOIN evidence e ON e.ref = t.paid_ref"
        " WHERE (t.paid_ref LIKE 'ticket:%' OR t.paid_ref LIKE 'placed:%')"
        " AND (e.ref IS NULL OR (e.kind = 'ack' AND NOT EXISTS"
        "  (SELECT 1 FROM acks a WHERE a.fragment_id = e.fragment_id AND a.peer_id = e.peer_id))"
        "  OR (t.kind = 'relay' AND NOT EXISTS (SELECT 1 FROM transactions r"
        "   WHERE r.ref = t.paid_ref AND r.kind IN ('store', 'fetch', 'retrieval'))))"
        " ORDER BY t.id")
    return [r[0] for r in rows]


async def fragment_root(db: Database, peer_id: str, fragment_id: str) -> str | None:
    """The Merkle root committed for `fragment_id` on `peer_id` (None if none was sent)."""
    value = await db.scalar("SELECT merkle_root FROM fragments WHERE peer_id = ? AND"
                            " fragment_id = ? LIMIT 1", (peer_id, fragment_id))
    return None if value is None else str(value)


async def clear_root(db: Database, fragment_id: str) -> None:
    """Forget a root the fragment's own bytes contradict (a consumer sent it wrong)."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE fragments SET merkle_root = NULL WHERE fragment_id = ?",
                           (fragment_id,))


async def owned_placement(db: Database, user: str, fragment_id: str,
                          peer_id: str) -> tuple[int, int] | None:
    """(pack pk, size) of `fragment_id` on `peer_id` in one of `user`'s packs, else None."""
    row = await db.one("SELECT f.pack_pk, f.size FROM fragments f JOIN packs p ON p.pk ="
                       " f.pack_pk WHERE f.fragment_id = ? AND f.peer_id = ? AND"
                       " p.user_name = ? LIMIT 1", (fragment_id, peer_id, user))
    return None if row is None else (int(row[0]), int(row[1]))
