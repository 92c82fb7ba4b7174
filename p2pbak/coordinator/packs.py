"""Packs: plan a placement, grant store tickets, commit, look up (op. 1 and 3)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from p2pbak.coordinator import billing, placement, proven, repair
from p2pbak.errors import NotPlanned
from p2pbak.net import tickets
from p2pbak.store.db import bank, claims, packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db.packs import Fragment, NotGranted, Pack
from p2pbak.store.db.peers import Peer

if TYPE_CHECKING:
    from p2pbak.coordinator.identity import Machine
    from p2pbak.coordinator.service import Coordinator

__all__ = ["Fragment", "NotGranted", "Pack", "Peer", "commit", "committed", "grant_stores",
           "lookup", "peers", "plan", "present"]


async def plan(coord: Coordinator, machine_id: str, size: int) -> placement.Placement:
    """A placement among the online peers but the caller's own; NotEnoughPeers if none."""
    online = await proven.with_counted_room(coord, await coordinator_peers.online(
        coord.db, coord.online_window, exclude=machine_id))
    balances = await bank.peer_balances(coord.db, [p.id for p in online])
    # the code choice is CPU work (market.erasure): off the event loop, so heartbeats and
    # other requests are answered meanwhile
    return await asyncio.to_thread(placement.place, online, size, random.Random(),
                                   balances=balances)


async def peers(coord: Coordinator, peer_ids: list[str]) -> dict[str, Peer]:
    """The known peers among `peer_ids`, by id."""
    return await coordinator_peers.many(coord.db, peer_ids)


async def committed(coord: Coordinator, user: str, pack_id: str) -> bool:
    return await packs.get(coord.db, user, pack_id) is not None


async def record_plan(coord: Coordinator, machine: Machine, pack_id: str,
                      chosen: placement.Placement) -> None:
    """The plan store tickets are checked against: these peers, this fragment size."""
    await claims.add_plan(coord.db, machine.user, pack_id, [
        claims.Planned(p.id, chosen.fragment_size) for p in chosen.peers + chosen.spares])


async def grant_stores(coord: Coordinator, machine: Machine, pack_id: str,
                       fragments: Sequence[Fragment]) -> list[str]:
    """One store ticket per fragment, its grant recorded until the ticket lapses; NotPlanned
    for a fragment no plan of this pack puts on that peer at that size."""
    missing = await claims.unplanned(coord.db, machine.user, pack_id, [
        claims.Planned(f.peer_id, f.size) for f in fragments])
    if missing:
        raise NotPlanned(f"no plan puts a {missing[0].fragment_size}-byte fragment of pack "
                         f"{pack_id} on peer {missing[0].peer_id}: plan the pack "
                         "(POST /v1/packs/plan) first")
    vias = await coord.relays_of([f.peer_id for f in fragments])
    wires = [coord.ticket(op="store", fragment=f.fragment_id, size=f.size, from_=machine.id,
                          to=f.peer_id, via=vias.get(f.peer_id, "")) for f in fragments]
    await packs.add_grants(coord.db, machine.user, pack_id, list(fragments),
                           int(time.time()) + tickets.DEFAULT_TTL)
    return wires


async def commit(coord: Coordinator, machine: Machine, pack: Pack) -> None:
    """Record the pack and charge its owner the first time; NotGranted for a fragment
    stored without a ticket, Conflict if committed already with other fragments."""
    if await packs.commit(coord.db, machine.user, machine.id, pack):
        await billing.charge_backup(coord, machine.user, pack.id, pack.length)
        await billing.settle_pending(coord, [f.fragment_id for f in pack.fragments])


async def lookup(coord: Coordinator, machine: Machine, pack_id: str) -> dict[str, Any] | None:
    """The caller's pack with its fragments in fetch order, each with a fetch ticket."""
    pack = await packs.get(coord.db, machine.user, pack_id)
    if pack is None:
        return None
    holders = await coordinator_peers.many(coord.db, [f.peer_id for f in pack.fragments])
    fragments = await repair.fetch_order(coord, pack.fragments, holders)
    vias = await coord.relays_of(list(holders))
    return {
        "pack_id": pack.id, "k": pack.k, "n": pack.n, "repair": pack.repair,
        "success": pack.success, "length": pack.length,
        "fragments": [{
            "index": f.index, "fragment_id": f.fragment_id, "size": f.size,
            "peer_id": f.peer_id, "url": holders[f.peer_id].url,
            "online": holders[f.peer_id].online(coord.online_window),
            "ticket": coord.ticket(op="fetch", fragment=f.fragment_id, size=f.size,
                                   from_=machine.id, to=f.peer_id,
                                   via=vias.get(f.peer_id, "")),
        } for f in fragments],
    }


async def present(coord: Coordinator, user: str, pack_ids: Sequence[str]) -> list[str]:
    """Those of `pack_ids` the user has committed, in the order asked."""
    return await packs.present(coord.db, user, pack_ids)
