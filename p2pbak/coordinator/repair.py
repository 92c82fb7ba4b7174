"""Repair (paper §2.3 operation 4) and the dispatch of every task to peer agents.

Peer agents poll; a queued task goes to the poller if it is the first in the work
allocation order (§2.4: lowest balance first) among the online, idle peers that may run
it, or to any such poller once the task has waited `DISPATCH_GRACE` seconds (the first
one may not be polling). A repair task names k+ live sources with fetch tickets and the
missing indices; the worker decodes the pack, re-encodes it at the same k/n (identical
fragments), asks for store tickets on new suppliers, stores, and reports; the placements
move in one transaction. Repair works on ciphertext: no key is involved.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from p2pbak.coordinator import audit, billing, placement, proven
from p2pbak.coordinator.checker import MAX_ATTEMPTS
from p2pbak.errors import NoSupplier
from p2pbak.market.allocation import Candidate, order_by_balance
from p2pbak.store.db import bank
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now
from p2pbak.store.db.packs import Fragment
from p2pbak.store.db.peers import HEALTHY_STATES, LEFT, Peer

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.repair")

REPAIR_LEASE = 900  # seconds a worker has to fetch, rebuild, store and report
CHECK_LEASE = 180  # audits and tests
DISPATCH_GRACE = 30  # after this long queued, any eligible poller may take a task
SCAN = 200  # queued tasks looked at per poll


async def balances(coord: Coordinator, peer_ids: Sequence[str]) -> dict[str, int]:
    """Each peer's owner's account balance in µc (0 for an account never booked)."""
    found = await bank.peer_balances(coord.db, peer_ids)
    return {p: found.get(p, 0) for p in peer_ids}


async def allocation_order(coord: Coordinator, peers: Sequence[Peer], seed: int) -> list[Peer]:
    """Work allocation (§2.4): lowest balance first, distinct subnets first."""
    return ordered(peers, await balances(coord, [p.id for p in peers]), seed)


def ordered(peers: Sequence[Peer], money: dict[str, int], seed: int) -> list[Peer]:
    """`peers` in allocation order, given each one's balance."""
    by_id = {p.id: p for p in peers}
    ids = order_by_balance([Candidate(p.id, money[p.id], p.subnet, placement.relayed(p))
                            for p in peers], seed)
    return [by_id[i] for i in ids]


async def fetch_order(coord: Coordinator, fragments: Sequence[Fragment],
                      holders: dict[str, Peer]) -> list[Fragment]:
    """The order a restorer should ask for `fragments` (retrieval, op. 3): online holders
    first, then work allocation's (§2.4: lowest balance first; at equal balance direct
    holders before relayed ones)."""
    rank = {p.id: i for i, p in enumerate(await allocation_order(
        coord, list(holders.values()), seed=random.getrandbits(32)))}
    return sorted(fragments, key=lambda f: (
        not holders[f.peer_id].online(coord.online_window), rank[f.peer_id]))


# -- dispatch ------------------------------------------------------------------------

async def next_task(coord: Coordinator, worker: str) -> dict[str, Any] | None:
    """Lease the first task this worker should run now; its payload, or None."""
    t = now()
    await store.requeue_expired(coord.db, _max_attempts(), t)
    busy = await store.busy_workers(coord.db)
    if worker in busy:
        return None
    online = await coordinator_peers.online(coord.db, coord.online_window)
    by_id = {p.id: p for p in online}
    if worker not in by_id:
        return None
    idle = [p for p in online if p.id not in busy]
    money = await balances(coord, [p.id for p in idle])  # once per poll, not per task
    queued = await store.queued(coord.db, SCAN, t)
    packs = await store.packs_with_holders(
        coord.db, [q.pack_pk for q in queued if q.kind == store.REPAIR and q.pack_pk])
    for task in queued:
        info, holders = packs.get(task.pack_pk or 0, (None, [])) \
            if task.kind == store.REPAIR else (None, [])
        excluded = _excluded(task, info, holders)
        if worker in excluded:
            continue
        if t - task.not_before < DISPATCH_GRACE:
            order = ordered([p for p in idle if p.id not in excluded], money, task.id)
            if not order or order[0].id != worker:
                continue
        if task.kind == store.REPAIR:
            payload = await _repair_payload(coord, task, worker, t, info, holders)
        else:
            payload = await audit.check_payload(coord, task, worker, by_id)
        if payload is None:
            continue
        lease = REPAIR_LEASE if task.kind == store.REPAIR else CHECK_LEASE
        if await store.lease(coord.db, task.id, worker, lease, t, _fetch_bytes(payload)):
            return {"task_id": task.id, "kind": task.kind, "lease": lease, **payload}
    return None


def _fetch_bytes(payload: dict[str, Any]) -> int | None:
    """What a repair lease has the worker download: the fragments to move (a copy), or k."""
    if "missing" not in payload:
        return None
    size = placement.fragment_size(int(payload["length"]), int(payload["k"]))
    return size * (len(payload["missing"]) if payload["copy"] else int(payload["k"]))


def _max_attempts() -> int:
    return MAX_ATTEMPTS


def _excluded(task: store.Task, info: store.PackInfo | None,
              holders: Sequence[store.Holder]) -> set[str]:
    """Peers that must not run `task`: a pack's holders and owner, an audit's target."""
    if task.kind != store.REPAIR:
        return {task.target} if task.target else set()
    owner = {info.machine_id} if info is not None and info.machine_id else set()
    return owner | {h.peer_id for h in holders}


def _healthy(coord: Coordinator, h: store.Holder, t: int) -> bool:
    return (h.state in HEALTHY_STATES and h.last_seen is not None
            and h.last_seen >= t - coord.repair.departure_timeout)


async def _repair_payload(coord: Coordinator, task: store.Task, worker: str, t: int,
                          info: store.PackInfo | None,
                          holders: Sequence[store.Holder]) -> dict[str, Any] | None:
    """What the worker needs, or None (task closed, or too few sources online now)."""
    if info is None:
        return None
    # fragments on leaving peers or flagged to move are rebuilt elsewhere (still sources)
    kept = {h.index for h in holders if _healthy(coord, h, t) and not h.moving}
    missing = [i for i in range(info.n) if i not in kept]
    if not missing:
        await store.finish(coord.db, task.id, store.DONE, {"moved": 0}, t)
        return None
    sources = [h for h in holders if h.state != LEFT and h.last_seen is not None
               and h.last_seen >= t - coord.online_window]
    copy = _copies(sources, missing)
    if copy:
        sources = copy
    elif len(sources) < info.k:
        return None
    random.shuffle(sources)
    vias = await coord.relays_of([h.peer_id for h in sources])
    return {
        "pack_id": info.id, "k": info.k, "n": info.n, "length": info.length,
        "missing": missing, "copy": bool(copy),
        "fragment_ids": {str(h.index): h.fragment_id for h in holders},
        "sources": [{"index": h.index, "fragment_id": h.fragment_id, "size": h.size,
                     "peer_id": h.peer_id, "url": h.url,
                     "ticket": coord.ticket(op="fetch", fragment=h.fragment_id, size=h.size,
                                            from_=worker, to=h.peer_id,
                                            via=vias.get(h.peer_id, ""))}
                    for h in sources],
    }


def _copies(sources: Sequence[store.Holder], missing: Sequence[int]) -> list[store.Holder]:
    """When every missing fragment is one flagged to move whose holder is online, the
    worker copies those (one transfer each) instead of fetching k to rebuild them."""
    live = {h.index: h for h in sources if h.moving}
    return [live[i] for i in missing] if all(i in live for i in missing) else []


# -- store tickets and completion ----------------------------------------------------

def check_fragments(info: store.PackInfo, holders: Sequence[store.Holder],
                    fragments: Sequence[tuple[int, str, int]]) -> str | None:
    """Why a worker's rebuilt fragments cannot be right, or None."""
    size = placement.fragment_size(info.length, info.k)
    known = {h.index: h.fragment_id for h in holders}
    for index, fid, fsize in fragments:
        if index >= info.n:
            return f"index {index} is not below n={info.n}"
        if fsize != size:
            return f"fragment {index} has {fsize} bytes, the code makes {size}"
        if known.get(index, fid) != fid:
            return f"fragment {index} does not match the recorded fragment id"
    return None


async def grant_stores(coord: Coordinator, task: store.Task, worker: str,
                       fragments: Sequence[tuple[int, str, int]],
                       exclude: set[str]) -> list[dict[str, Any]]:
    """Choose a new distinct supplier for each rebuilt fragment and sign store tickets.

    Fragments get suppliers in order while there are any; NoSupplier when none can.
    """
    assert task.pack_pk is not None
    info = await store.pack_info(coord.db, task.pack_pk)
    holders = await store.holders(coord.db, task.pack_pk)
    assert info is not None
    granted = await store.grants(coord.db, task.id)
    wanted = {index for index, _, _ in fragments}
    taken = {g.peer_id for g in granted if g.index not in wanted}
    # the worker may keep one rebuilt fragment itself: it holds none of this pack
    skip = exclude | taken | {h.peer_id for h in holders} | {info.machine_id or ""}
    size = placement.fragment_size(info.length, info.k)
    online = await coordinator_peers.online(coord.db, coord.online_window)
    peers = [p for p in await proven.with_counted_room(coord, online)  # room: proof-bounded
             if p.id not in skip and p.free_bytes >= size]
    chosen = (await allocation_order(coord, peers, task.id))[:len(fragments)]
    if not chosen:
        raise NoSupplier("no online peer without a fragment of this pack has room: "
                         "wait for more peers")
    records = [Fragment(index, fid, fsize, peer.id)
               for (index, fid, fsize), peer in zip(fragments, chosen, strict=False)]
    await store.add_grants(coord.db, task.id, records)
    vias = await coord.relays_of([peer.id for peer in chosen])
    return [{"index": r.index, "fragment_id": r.fragment_id, "size": r.size,
             "peer_id": peer.id, "url": peer.url,
             "ticket": coord.ticket(op="store", fragment=r.fragment_id, size=r.size,
                                    from_=worker, to=peer.id, via=vias.get(peer.id, ""))}
            for r, peer in zip(records, chosen, strict=True)]


async def complete(coord: Coordinator, task: store.Task, worker: str,
                   stored: Sequence[Fragment]) -> list[Fragment]:
    """Move the placements of the stored fragments; the task is done. The worker is paid
    for what its lease had it fetch (k fragments, or only those it copied) and store."""
    moved = await store.move_placements(coord.db, task, worker, stored)
    info = await store.pack_info(coord.db, task.pack_pk or 0)
    if info is not None:
        size = placement.fragment_size(info.length, info.k)
        fetched = task.size if task.size is not None else size * info.k
        await billing.pay_worker(coord, task, worker, size * len(moved), fetched)
    if moved:
        await billing.settle_pending(coord, [f.fragment_id for f in moved])
        log.info("repaired pack #%s: %d fragment(s) placed on new suppliers",
                 task.pack_pk, len(moved))
    return moved


async def retry_later(coord: Coordinator, task: store.Task, why: str) -> None:
    """A repair that moved nothing waits before its next try (5 s, doubling, ≤ 5 min);
    after MAX_ATTEMPTS tries it is closed and the checker queues a fresh one."""
    if task.attempts + 1 >= MAX_ATTEMPTS:
        await store.finish(coord.db, task.id, store.FAILED, {"detail": why})
        return
    await store.retry(coord.db, task.id, min(300, 5 * 2 ** task.attempts), why)
