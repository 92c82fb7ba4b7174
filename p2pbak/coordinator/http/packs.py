"""Coordinator routes for packs: plan a placement, store tickets, commit, look up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import accounts, packs, placement
from p2pbak.coordinator.http.common import caller, ok
from p2pbak.coordinator.identity import Machine
from p2pbak.coordinator.service import Coordinator
from p2pbak.errors import Conflict, NotPlanned, SuppliersFull
from p2pbak.net.validate import Body, HexId, fail, parse, path_id

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
    try:
        chosen = await packs.plan(coord, machine.id, body.size)
    except SuppliersFull as exc:  # 413: no room for this pack on enough of them
        fail(413, str(exc))
    except placement.NotEnoughPeers as exc:
        fail(409, str(exc))
    code = chosen.code
    await packs.record_plan(coord, machine, body.pack_id or "", chosen)
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
    found = await packs.peers(coord, [f.peer_id for f in fragments])
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
    if await packs.committed(coord, machine.user, pack_id):
        fail(409, f"pack {pack_id} is already committed: nothing to upload")
    try:
        wires = await packs.grant_stores(coord, machine, pack_id,
                                         [f.record() for f in body.fragments])
    except NotPlanned as exc:  # a ticket is signed only for what the coordinator planned
        fail(409, str(exc))
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
        await packs.commit(coord, machine, pack)
    except packs.NotGranted as exc:
        fail(409, f"no store ticket was issued for {exc}: request tickets before storing")
    except Conflict:
        fail(409, f"pack {pack_id} is already committed with other fragments")
    return ok()


@routes.get("/v1/packs/{pack_id}")
async def get_pack(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    pack_id = path_id(request, "pack_id")
    found = await packs.lookup(coord, machine, pack_id)
    if found is None:
        fail(404, f"no pack {pack_id} for this user")
    return web.json_response(found)


@routes.post("/v1/packs/exists")
async def exists(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, ExistsBody)
    return web.json_response({"present": await packs.present(coord, machine.user,
                                                             body.pack_ids)})
