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
from dataclasses import dataclass, field

import aiosqlite

from p2pbak.store.db.database import Database, batches, marks, now

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


@dataclass
class Facts:
    """What backs and classifies a batch of one peer's receipts, read in a few queries
    (not a few per receipt): each fragment's committed placements on the peer (when, and
    whose packs), the users granted it there, whether a receiver acknowledged getting it
    from the peer, and which fetch tickets their receivers acknowledged."""

    placed: dict[str, int] = field(default_factory=dict)  # fragment → latest stored
    owners: dict[str, set[str]] = field(default_factory=dict)  # fragment → pack owners
    granted: dict[str, set[str]] = field(default_factory=dict)  # fragment → grantees
    served: set[str] = field(default_factory=set)  # fragments a receiver acknowledged
    acked: set[tuple[str, str]] = field(default_factory=set)  # (ticket id, receiver)


async def facts(db: Database, peer_id: str, fragment_ids: Sequence[str],
                tickets: Sequence[tuple[str, str]]) -> Facts:
    """`Facts` of `fragment_ids` on `peer_id` and of the (ticket id, receiver) pairs."""
    out = Facts()
    for part in batches(fragment_ids):
        args = (peer_id, *part)
        for r in await db.all(
                "SELECT f.fragment_id, f.stored, p.user_name FROM fragments f JOIN packs p"
                f" ON p.pk = f.pack_pk WHERE f.peer_id = ? AND f.fragment_id IN ({marks(part)})",
                args):
            out.placed[r[0]] = max(out.placed.get(r[0], 0), int(r[1]))
            out.owners.setdefault(r[0], set()).add(r[2])
        for r in await db.all("SELECT fragment_id, user_name FROM grants WHERE peer_id = ?"
                              f" AND fragment_id IN ({marks(part)})", args):
            out.granted.setdefault(r[0], set()).add(r[1])
        out.served.update(r[0] for r in await db.all(
            "SELECT DISTINCT fragment_id FROM acks WHERE peer_id = ?"
            f" AND fragment_id IN ({marks(part)})", args))
    wanted = set(tickets)
    for part in batches(t for t, _ in tickets):
        out.acked.update(p for r in await db.all(
            f"SELECT ticket_id, machine_id FROM acks WHERE ticket_id IN ({marks(part)})", part)
            if (p := (r[0], r[1])) in wanted)
    return out


async def add_acks(db: Database, machine_id: str,
                   acks: Sequence[tuple[str, str, str, int]]) -> None:
    """Record a receiver's acknowledgements (ticket id, peer id, fragment id, size) in one
    transaction; a ticket acknowledged before keeps its first."""
    if not acks:
        return
    t = now()
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO acks(ticket_id, machine_id, peer_id, fragment_id, size, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(ticket, machine_id, peer, fragment, size, t)
             for ticket, peer, fragment, size in acks])


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


async def settle_all_in(conn: aiosqlite.Connection,
                        settled: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Inside the booking transaction: each (ref, ticket id, peer id, fragment id, kind)
    claim is settled and its evidence kept (the first, for a ref booked before)."""
    for part in batches(ticket for _, ticket, _, _, _ in settled):
        await conn.execute(f"DELETE FROM claims WHERE ticket_id IN ({marks(part)})", part)
    t = now()
    await conn.executemany(
        "INSERT INTO evidence(ref, ticket_id, peer_id, fragment_id, kind, at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(ref) DO NOTHING",
        [(*row, t) for row in settled])


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
