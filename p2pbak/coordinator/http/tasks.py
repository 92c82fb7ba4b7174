"""Coordinator routes for peer agents' tasks: poll for work, get store tickets, report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import audit, repair, tasks
from p2pbak.coordinator.http.common import caller, ok
from p2pbak.coordinator.http.packs import FragmentBody, Index
from p2pbak.coordinator.packs import Fragment
from p2pbak.coordinator.service import Coordinator
from p2pbak.net.validate import Body, HexId, fail, parse, path_int

routes = web.RouteTableDef()

MAX_N = 256
Size = Annotated[int, Field(ge=1, le=1024 * 1024 * 1024)]
PeerId = Annotated[str, Field(min_length=1, max_length=64)]


class PollBody(Body):
    pass


class Rebuilt(Body):
    index: Index
    fragment_id: HexId
    size: Size


class TicketsBody(Body):
    fragments: Annotated[list[Rebuilt], Field(min_length=1, max_length=MAX_N)]
    exclude: Annotated[list[PeerId], Field(default_factory=list, max_length=1024)]


class ReportBody(Body):
    outcome: Literal["ok", "failed", "offline"]
    detail: Annotated[str, Field(max_length=1000)] = ""
    stored: Annotated[list[FragmentBody], Field(default_factory=list, max_length=MAX_N)]
    # an audit's answer as the holder gave it (net.proofs); the coordinator verifies it
    proofs: Annotated[list[dict[str, Any]], Field(max_length=64)] | None = None


def _task_id(request: web.Request) -> int:
    return path_int(request, "task_id", 10**18)


async def _leased(request: web.Request) -> tuple[Coordinator, str, tasks.Task]:
    """The caller's coordinator, machine id and the task it holds the lease of."""
    coord, machine = await caller(request)
    task = await tasks.get_task(coord, _task_id(request))
    if task is None or task.worker != machine.id:
        fail(404, "no such task leased to this peer: poll for a new one")
    if task.state != tasks.LEASED:
        fail(409, f"task {task.id} is no longer leased to this peer (it is {task.state}): "
                  "poll for a new one")
    return coord, machine.id, task


@routes.post("/v1/tasks/poll")
async def poll(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    await parse(request, PollBody)
    return web.json_response({"task": await repair.next_task(coord, machine.id)})


@routes.post("/v1/tasks/{task_id}/tickets")
async def store_tickets(request: web.Request) -> web.Response:
    coord, worker, task = await _leased(request)
    body = await parse(request, TicketsBody)
    if task.kind != tasks.REPAIR or task.pack_pk is None:
        fail(400, f"task {task.id} is a {task.kind}: only repairs store fragments")
    frags = [(f.index, f.fragment_id, f.size) for f in body.fragments]
    if len({f[0] for f in frags}) != len(frags):
        fail(400, "two fragments share an index")
    info = await tasks.pack_info(coord, task.pack_pk)
    if info is None:
        fail(409, "the pack was deleted: report the task as failed")
    why = await tasks.check_rebuilt(coord, task.pack_pk, info, frags)
    if why:
        fail(400, f"rebuilt fragments refused: {why}")
    try:
        targets = await repair.grant_stores(coord, task, worker, frags, set(body.exclude))
    except repair.NoSupplier as exc:
        fail(409, str(exc))
    return web.json_response({"targets": targets})


@routes.post("/v1/tasks/{task_id}/report")
async def report(request: web.Request) -> web.Response:
    coord, worker, task = await _leased(request)
    body = await parse(request, ReportBody)
    if task.kind != tasks.REPAIR:
        if body.stored:
            fail(400, f"task {task.id} is a {task.kind}: it stores no placements")
        await audit.report(coord, task, worker, body.outcome, body.detail, body.proofs)
        return ok()
    stored = [Fragment(f.index, f.fragment_id, f.size, f.peer_id) for f in body.stored]
    if not stored:
        await repair.retry_later(coord, task, body.detail or body.outcome)
        return ok(moved=0)
    moved = await repair.complete(coord, task, worker, stored)
    return ok(moved=len(moved))
