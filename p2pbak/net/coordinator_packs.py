"""Coordinator routes for packs: plan a placement, store tickets, commit, look up."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Annotated

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import accounts, billing, evidence, placement, repair
from p2pbak.coordinator.service import Coordinator
from p2pbak.net import tickets
from p2pbak.net.coordinator_common import caller, ok
from p2pbak.net.validate import Body, HexId, fail, parse, path_id
from p2pbak.store import bank, claims, coordinator_peers
from p2pbak.store import coordinator_packs as packs
from p2pbak.store.coordinator_db import Conflict
from p2pbak.store.coordinator_users import Machine

routes = web.RouteTableDef()

MAX_PACK = 1024 * 1024 * 1024  # bytes; packs are ~16 MiB
MAX_N = 256  # zfec
Index = Annotated[int, Field(ge=0, lt=MAX_N)]
CodeParam = Annotated[int, Field(ge=1, le=MAX_N)]


class PlanBody(Body):
    size: Annotated[int, Field(ge=1, le=MAX_PACK)]
    pack_id: HexId | None = None  # binds the plan's store tickets to this pack


class FragmentBody(Body):
    index: Index
    fragment_id: HexId
    size: Annotated[int, Field(ge=1, le=MAX_PACK)]
    peer_id: Annotated[str, Field(min_length=1, max_length=64)]
    merkle_root: HexId | None = None  # net.proofs root of the fragment, for audits

    def record(self) -> packs.Fragment:
        return packs.Fragment(self.index, self.fragment_id, self.size, self.peer_id,
                              self.merkle_root)


Fragments = Annotated[list[FragmentBody], Field(min_length=1, max_length=MAX_N)]


class TicketsBody(Body):
    fragments: Fragments


class CommitBody(Body):
    k: CodeParam
    n: CodeParam
    repair: CodeParam
    success: CodeParam
    length: Annotated[int, Field(ge=1, le=MAX_PACK)]
    fragments: Fragments


class ExistsBody(Body):
    pack_ids: Annotated[list[HexId], Field(max_length=10_000)]


@routes.post("/v1/packs/plan")
async def plan(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, PlanBody)
    refusal = await accounts.backup_refusal(coord, machine.user)
    if refusal is not None:  # frozen (§2.4): no new backups; restores never ask
        fail(402, refusal)
    peers = await coordinator_peers.online(coord.db, coord.online_window, exclude=machine.id)
    balances = await bank.peer_balances(coord.db, [p.id for p in peers])
    try:
        chosen = placement.place(peers, body.size, random.Random(), balances=balances)
    except placement.NotEnoughPeers as exc:
        fail(409, str(exc))
    code = chosen.code
    await claims.add_plan(coord.db, machine.user, body.pack_id or "", [
        claims.Planned(p.id, chosen.fragment_size) for p in chosen.peers + chosen.spares])
    return web.json_response({
        "k": code.k, "n": code.n, "repair": code.repair, "success": code.success,
        "total": code.total, "availability": code.availability,
        "meets_target": code.meets_target, "fragment_size": chosen.fragment_size,
        "peers": [{"peer_id": p.id, "url": p.url} for p in chosen.peers + chosen.spares],
    })


def _distinct(fragments: Sequence[FragmentBody]) -> None:
    for what, values in (("index", [f.index for f in fragments]),
                         ("peer_id", [f.peer_id for f in fragments]),
                         ("fragment_id", [f.fragment_id for f in fragments])):
        if len(set(values)) != len(values):
            fail(400, f"two fragments share a {what}: one fragment per peer, never two")


async def _check_suppliers(coord: Coordinator, machine: Machine,
                           fragments: Sequence[FragmentBody]) -> None:
    found = await coordinator_peers.many(coord.db, [f.peer_id for f in fragments])
    for f in fragments:
        peer = found.get(f.peer_id)
        if f.peer_id == machine.id:
            fail(400, "a pack's fragments never go to the machine that owns it")
        if peer is None or not peer.online(coord.online_window):
            fail(409, f"peer {f.peer_id} is not an online supplier: plan again")


@routes.post("/v1/packs/{pack_id}/tickets")
async def store_tickets(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    pack_id = path_id(request, "pack_id")
    body = await parse(request, TicketsBody)
    _distinct(body.fragments)
    await _check_suppliers(coord, machine, body.fragments)
    if await packs.get(coord.db, machine.user, pack_id) is not None:
        fail(409, f"pack {pack_id} is already committed: nothing to upload")
    missing = await claims.unplanned(coord.db, machine.user, pack_id, [
        claims.Planned(f.peer_id, f.size) for f in body.fragments])
    if missing:  # a ticket is signed only for what the coordinator planned
        fail(409, f"no plan puts a {missing[0].fragment_size}-byte fragment of pack {pack_id}"
                  f" on peer {missing[0].peer_id}: plan the pack (POST /v1/packs/plan) first")
    wires = [coord.ticket(op="store", fragment=f.fragment_id, size=f.size, from_=machine.id,
                          to=f.peer_id) for f in body.fragments]
    await packs.add_grants(coord.db, machine.user, pack_id,
                           [f.record() for f in body.fragments],
                           int(time.time()) + tickets.DEFAULT_TTL)
    return web.json_response({"tickets": wires})


def _check_code(body: CommitBody) -> None:
    # success may sit below repair on a small grid: the checker then tops the pack up
    if not (body.k <= body.repair <= body.n and body.k <= body.success <= body.n):
        fail(400, "bad code: need k <= repair <= n and k <= success <= n")
    size = placement.fragment_size(body.length, body.k)
    for f in body.fragments:
        if f.index >= body.n:
            fail(400, f"fragment index {f.index} is not below n={body.n}")
        if f.size != size:
            fail(400, f"fragment {f.index} has {f.size} bytes; a {body.k}-of-{body.n} code of "
                      f"{body.length} bytes makes {size}")


@routes.post("/v1/packs/{pack_id}/commit")
async def commit(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    pack_id = path_id(request, "pack_id")
    body = await parse(request, CommitBody)
    _check_code(body)
    _distinct(body.fragments)
    if len(body.fragments) < body.success:
        fail(409, f"only {len(body.fragments)} fragments stored, {body.success} needed: "
                  "store more before committing")
    pack = packs.Pack(pack_id, body.k, body.n, body.repair, body.success, body.length, 0,
                      tuple(f.record() for f in body.fragments))
    try:
        if await packs.commit(coord.db, machine.user, machine.id, pack):
            await billing.charge_backup(coord, machine.user, pack_id, body.length)
            await evidence.settle_pending(coord, [f.fragment_id for f in body.fragments])
    except packs.NotGranted as exc:
        fail(409, f"no store ticket was issued for {exc}: request tickets before storing")
    except Conflict:
        fail(409, f"pack {pack_id} is already committed with other fragments")
    return ok()


@routes.get("/v1/packs/{pack_id}")
async def get_pack(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    pack_id = path_id(request, "pack_id")
    pack = await packs.get(coord.db, machine.user, pack_id)
    if pack is None:
        fail(404, f"no pack {pack_id} for this user")
    holders = await coordinator_peers.many(coord.db, [f.peer_id for f in pack.fragments])
    fragments = await repair.fetch_order(coord, pack.fragments, holders)
    return web.json_response({
        "pack_id": pack.id, "k": pack.k, "n": pack.n, "repair": pack.repair,
        "success": pack.success, "length": pack.length,
        "fragments": [{
            "index": f.index, "fragment_id": f.fragment_id, "size": f.size,
            "peer_id": f.peer_id, "url": holders[f.peer_id].url,
            "online": holders[f.peer_id].online(coord.online_window),
            "ticket": coord.ticket(op="fetch", fragment=f.fragment_id, size=f.size,
                                   from_=machine.id, to=f.peer_id),
        } for f in fragments],
    })


@routes.post("/v1/packs/exists")
async def exists(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, ExistsBody)
    return web.json_response({"present": await packs.present(coord.db, machine.user,
                                                             body.pack_ids)})
