"""The supply the coordinator counts for each peer: its caps, bounded by proven work
(p2pbak.market.proven), for the daily price job and for placement."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pbak.coordinator import placement
from p2pbak.market import proven as rules
from p2pbak.market.caps import UNCAPPED_RATE
from p2pbak.market.prices import USABLE_FRACTION
from p2pbak.market.proven import Caps, Counted, Proven, counted_caps, lowest
from p2pbak.market.supply import RatioLimits, chained_limits
from p2pbak.store.db import supply
from p2pbak.store.db.peers import ACTIVE, Peer

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator


def work_window(coord: Coordinator) -> int:
    """Seconds of transfers behind a peer's proven bandwidth: one price interval."""
    return max(int(coord.market.price_interval), coord.online_window)


def cap_window(coord: Coordinator) -> int:
    """Seconds over which caps count at their lowest: one price interval. Caps moved
    more than once between two price jobs swing faster than the job, and so the price
    hold (market.hold), can see: only their lowest is counted."""
    return int(coord.market.price_interval)


async def counted(coord: Coordinator, peers: Sequence[Peer]) -> dict[str, Counted]:
    """Per peer the caps the market counts (bytes, bytes/s while online)."""
    t = int(time.time())
    window = work_window(coord)
    proofs = await supply.proven(coord.db, t - window)
    low = await supply.lowest_caps(coord.db, t - cap_window(coord))
    nothing, uncapped = Proven(), Caps(None, None, None)
    return {p.id: _counted(p, low.get(p.id, uncapped), proofs.get(p.id, nothing), window)
            for p in peers}


def _counted(p: Peer, low: Caps, proof: Proven, window: int) -> Counted:
    caps = lowest(Caps(p.space, p.upload, p.download), low)  # a space of 0 lends nothing
    return counted_caps(caps, proof, window, placement.availability(p),
                        p.stored_bytes + p.free_bytes)


async def online_supply(coord: Coordinator, window: int,
                        limits: RatioLimits | None) -> tuple[float, float, float]:
    """Σ over the active peers seen within `window` s of their counted supply in market
    units, each within eq. (4) (`limits`; None: as counted): summed by the database in
    one statement (store.db.supply.online_supply), no row per peer fetched."""
    t = int(time.time())
    rule = supply.SupplyRule(work_window(coord), rules.SPACE_FLOOR, rules.RATE_FLOOR,
                             UNCAPPED_RATE, placement.CLAMP, USABLE_FRACTION,
                             None if limits is None else chained_limits(limits))
    return await supply.online_supply(coord.db, ACTIVE, t - window, t - cap_window(coord),
                                      t - work_window(coord), rule)


async def with_counted_room(coord: Coordinator, peers: Sequence[Peer]) -> list[Peer]:
    """The peers with their free space cut to what their counted space leaves: a peer is
    given no more than its proven space plus headroom (market.proven). A peer whose room
    is not cut is handed back as it is."""
    caps = await counted(coord, peers)
    out = []
    for p in peers:
        room = max(0, min(p.free_bytes, caps[p.id].space - p.stored_bytes))
        out.append(p if room == p.free_bytes else p.with_free_bytes(room))
    return out
