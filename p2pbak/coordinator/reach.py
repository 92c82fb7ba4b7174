"""How each peer is reached, as the reach route found it (kept in the database:
store/db/reach.py): dialled back (public, maybe through a router's mapping), or relayed
by the least-loaded relay on offer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pbak.store.db import peers
from p2pbak.store.db import reach as store
from p2pbak.store.db.reach import Reach

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

__all__ = ["Reach", "assign", "get", "punched", "record", "relay_choices", "withdraw"]


async def record(coord: Coordinator, peer_id: str, reach: Reach) -> None:
    """What the latest dial-back found; a relay assignment is cleared by it (tickets name
    a relay only while one is assigned)."""
    await store.record(coord.db, peer_id, reach)


async def get(coord: Coordinator, peer_id: str) -> Reach:
    return await store.get(coord.db, peer_id)


async def relay_choices(coord: Coordinator, peer_id: str,
                        avoid: set[str]) -> list[tuple[str, str]]:
    """(relay id, URL) of the offered relays online now, least loaded first, not `peer_id`
    itself nor a URL it asked to avoid."""
    offered, load = await store.offers(coord.db), await store.load(coord.db)
    online = await peers.many(coord.db, list(offered))
    return [(rid, url) for _, rid, url in sorted(
        (load[rid], rid, url) for rid, url in offered.items()
        if rid != peer_id and url not in avoid and rid in online
        and online[rid].online(coord.online_window))]


async def withdraw(coord: Coordinator, relay_id: str) -> None:
    await store.withdraw(coord.db, relay_id)


async def assign(coord: Coordinator, peer_id: str, relay_id: str) -> None:
    await store.assign(coord.db, peer_id, relay_id)


async def punched(coord: Coordinator, peer_id: str, links: int) -> bool:
    """What the peer says it hole-punched (status only: nothing is paid or placed on it)."""
    return await store.punched(coord.db, peer_id, links)
