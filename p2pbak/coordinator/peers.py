"""Peer agents (announce, heartbeat) and a machine's status as the status route shows it."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from p2pbak.coordinator import accounts, placement
from p2pbak.store.db import blobs as coordinator_blobs
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db.peers import Peer

if TYPE_CHECKING:
    from p2pbak.coordinator.identity import Machine
    from p2pbak.coordinator.service import Coordinator

STATUS_PACK_SIZE = 16 * 1024 * 1024  # the usual pack, for the predicted availability

__all__ = ["Peer", "announce", "get", "heartbeat", "many", "sign_off", "status"]


async def get(coord: Coordinator, peer_id: str) -> Peer | None:
    return await coordinator_peers.get(coord.db, peer_id)


async def many(coord: Coordinator, peer_ids: list[str]) -> dict[str, Peer]:
    return await coordinator_peers.many(coord.db, peer_ids)


async def announce(coord: Coordinator, peer_id: str, *, url: str, space: int | None,
                   upload: int | None, download: int | None) -> bool:
    """Create or update the machine's peer; True if it had left and re-joins afresh (its
    agent then drops what it still holds: nothing is placed on a peer that left)."""
    rejoined = await coordinator_peers.revive_left(coord.db, peer_id,
                                                   placement.PRIOR_AVAILABILITY)
    await coordinator_peers.announce(coord.db, peer_id=peer_id, url=url,
                                     subnet=placement.subnet_of(url), space=space,
                                     upload=upload, download=download)
    return rejoined


async def heartbeat(coord: Coordinator, peer_id: str, *, url: str, stored_bytes: int,
                    free_bytes: int) -> bool:
    """False if this machine never announced a peer. Committed together with the other
    heartbeats arriving meanwhile (coordinator.groupcommit)."""
    return await coord.heartbeats.add(coordinator_peers.Beat(
        peer_id, url, placement.subnet_of(url), stored_bytes, free_bytes))


async def sign_off(coord: Coordinator, peer_id: str) -> bool:
    """The machine's agent is stopping: its peer counts as offline from now on (no money
    moves, no earlier repair: that still waits for the departure timeout); False if the
    machine has no peer."""
    return await coordinator_peers.sign_off(coord.db, peer_id)


async def status(coord: Coordinator, machine: Machine) -> dict[str, Any]:
    """The caller's backups, its peer, the code a pack would get now and its account."""
    db = coord.db
    peer = await coordinator_peers.get(db, machine.id)
    packs, backed_up = await coordinator_packs.totals(db, machine.user)
    others = await coordinator_peers.online(db, coord.online_window, exclude=machine.id)
    try:
        code = placement.place(others, STATUS_PACK_SIZE, random.Random(machine.id)).code
    except placement.NotEnoughPeers:
        code = None
    return {
        "user": machine.user,
        "machine_id": machine.id,
        "machine_name": machine.name,
        "peer_online": peer is not None and peer.online(coord.online_window),
        "peer_url": peer.url if peer is not None else None,
        "snapshots": await coordinator_blobs.count(db, machine.user, "snapshot"),
        "indexes": await coordinator_blobs.count(db, machine.user, "index"),
        "packs": packs,
        "bytes_backed_up": backed_up,
        "bytes_stored_for_others": peer.stored_bytes if peer is not None else 0,
        "peers_online": len(others) + (1 if peer is not None and
                                       peer.online(coord.online_window) else 0),
        "online_window": coord.online_window,  # s: a peer heard from within it is online
        "code": None if code is None else {
            "k": code.k, "n": code.n, "repair": code.repair, "success": code.success,
            "availability": code.availability, "meets_target": code.meets_target},
        "availability": None if code is None else code.availability,
        "account": await accounts.account_summary(coord, machine.user),  # §2.4 bank
    }
