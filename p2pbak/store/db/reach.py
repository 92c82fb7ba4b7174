"""How each peer is reached (SQL only): kept by `POST /v1/reach` in the database, not in
one coordinator's memory, so that every coordinator on a shared database signs tickets
naming the same relay and reports the same reach."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from p2pbak.store.db.database import Database, batches, marks, now


@dataclass(frozen=True)
class Reach:
    """One peer's reach: URLs dialled back (`public`), those of them a router maps, by
    what (UPnP, NAT-PMP), the URL where it relays for others (if it offers), and the
    relay that carries it (if relayed)."""

    public: tuple[str, ...] = ()
    mapped: tuple[str, ...] = ()
    mapped_by: str = ""
    offer: str | None = None
    relay_id: str | None = None
    punched: int = 0  # direct links hole-punched since the peer started (net/punch.py)
    punched_at: int | None = None  # when it last told


def _lines(urls: Sequence[str]) -> str:
    return "\n".join(urls)  # a URL holds no newline


def _urls(text: str) -> tuple[str, ...]:
    return tuple(text.split("\n")) if text else ()


async def record(db: Database, peer_id: str, reach: Reach) -> None:
    """Replace `peer_id`'s reach with `reach` (what it punched stays: `punched`)."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO reach(peer_id, public, mapped, mapped_by, offer, relay_id)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (peer_id) DO UPDATE SET"
            " public = excluded.public, mapped = excluded.mapped,"
            " mapped_by = excluded.mapped_by, offer = excluded.offer,"
            " relay_id = excluded.relay_id",
            (peer_id, _lines(reach.public), _lines(reach.mapped), reach.mapped_by,
             reach.offer, reach.relay_id))


async def get(db: Database, peer_id: str) -> Reach:
    row = await db.one("SELECT public, mapped, mapped_by, offer, relay_id, punched, punched_at"
                       " FROM reach WHERE peer_id = ?", (peer_id,))
    if row is None:
        return Reach()
    return Reach(_urls(row[0]), _urls(row[1]), row[2], row[3], row[4], int(row[5]), row[6])


async def relays_of(db: Database, peer_ids: Sequence[str]) -> dict[str, str]:
    """The relay carrying each of `peer_ids` that is relayed."""
    out: dict[str, str] = {}
    for part in batches(peer_ids):
        rows = await db.all(f"SELECT peer_id, relay_id FROM reach WHERE peer_id IN"
                            f" ({marks(part)}) AND relay_id IS NOT NULL", part)
        out.update((r[0], r[1]) for r in rows)
    return out


async def offers(db: Database) -> dict[str, str]:
    """Peers offering to relay: id → the URL they relay at."""
    return {r[0]: r[1] for r in await db.all(
        "SELECT peer_id, offer FROM reach WHERE offer IS NOT NULL")}


async def load(db: Database) -> Counter[str]:
    """Relay id → how many peers it carries."""
    return Counter({r[0]: int(r[1]) for r in await db.all(
        "SELECT relay_id, count(*) FROM reach WHERE relay_id IS NOT NULL GROUP BY relay_id")})


async def withdraw(db: Database, relay_id: str) -> None:
    """`relay_id` no longer offered (it did not answer when a peer was to be given it)."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE reach SET offer = NULL WHERE peer_id = ?", (relay_id,))


async def assign(db: Database, peer_id: str, relay_id: str) -> None:
    """`relay_id` now carries `peer_id`."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE reach SET relay_id = ? WHERE peer_id = ?",
                           (relay_id, peer_id))


async def punched(db: Database, peer_id: str, links: int) -> bool:
    """`peer_id` has hole-punched `links` direct links since it started; False if the
    coordinator has no reach of it (it never asked POST /v1/reach)."""
    async with db.transaction() as conn:
        cur = await conn.execute("UPDATE reach SET punched = ?, punched_at = ? WHERE"
                                 " peer_id = ?", (links, now(), peer_id))
        return cur.rowcount > 0
