"""Garbage, graceful exit and repository locks: what the garbage routes ask for.

A user's client lists its packs, asks how well they are placed and drops those no snapshot
references; dropped packs' fragments go on their suppliers' delete lists, which peer agents
fetch with delete tickets and confirm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from p2pbak.store.db import garbage, locks
from p2pbak.store.db.database import now
from p2pbak.store.db.garbage import Dropped, Leave, PackPlacement, PackRow
from p2pbak.store.db.locks import Holder
from p2pbak.store.db.peers import DISQUALIFIED

if TYPE_CHECKING:
    from p2pbak.coordinator.identity import Machine
    from p2pbak.coordinator.service import Coordinator

__all__ = ["DISQUALIFIED", "Dropped", "Holder", "Leave", "PackPlacement", "PackRow",
           "begin_leave", "deletions", "drop", "leave_progress", "now", "placements",
           "release_lock", "take_lock", "user_packs"]


async def user_packs(coord: Coordinator, user: str) -> list[PackRow]:
    return await garbage.user_packs(coord.db, user)


async def placements(coord: Coordinator, user: str,
                     pack_ids: Sequence[str]) -> list[PackPlacement]:
    """How many fragments of each pack are placed, and how many on online peers."""
    return await garbage.placements(coord.db, user, pack_ids, now() - coord.online_window)


async def drop(coord: Coordinator, user: str, pack_ids: Sequence[str]) -> Dropped:
    return await garbage.drop_packs(coord.db, user, pack_ids)


async def deletions(coord: Coordinator, peer_id: str, done: Sequence[str],
                    limit: int) -> list[dict[str, Any]]:
    """Confirm what the peer deleted; its next deletions, each with a delete ticket."""
    if done:
        await garbage.confirm(coord.db, peer_id, done)
    todo = await garbage.pending(coord.db, peer_id, limit)
    return [{"fragment_id": fid, "size": size,
             "ticket": coord.ticket(op="delete", fragment=fid, size=size, from_="coordinator",
                                    to=peer_id)}
            for fid, size in todo]


async def begin_leave(coord: Coordinator, peer_id: str) -> str | None:
    """Mark the peer leaving; its state (DISQUALIFIED if audits disqualified it)."""
    return await garbage.begin_leave(coord.db, peer_id)


async def leave_progress(coord: Coordinator, peer_id: str) -> Leave | None:
    return await garbage.leave_progress(coord.db, peer_id)


def _request(machine: Machine, holder: str | None, command: str,
             machine_locked: bool = False) -> locks.Request:
    # a client that names no holder (before holders) holds one lock per machine
    return locks.Request(machine.user, machine.id, holder or machine.id, command,
                         machine_locked)


async def take_lock(coord: Coordinator, machine: Machine, exclusive: bool, ttl: int,
                    holder: str | None = None, command: str = "",
                    machine_locked: bool = False) -> Holder | None:
    """Take or renew the holder's lock; the other holder's lock that stands in the way."""
    return await locks.take(coord.db, _request(machine, holder, command, machine_locked),
                            exclusive, ttl)


async def release_lock(coord: Coordinator, machine: Machine, holder: str | None = None) -> None:
    await locks.release(coord.db, _request(machine, holder, ""))
