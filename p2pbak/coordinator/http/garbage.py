"""Coordinator routes for garbage and graceful exit (docs/api.md, "Garbage").

A user's client lists its packs, asks how well they are placed (`check`) and drops those
no snapshot references (`prune`); the coordinator cannot read the trees, so the client
decides. Dropped packs' fragments go on their suppliers' delete lists, which peer agents
fetch with delete tickets, act on and confirm. `supply leave` marks this machine's peer
leaving and reports how many placements are still on it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import garbage
from p2pbak.coordinator.garbage import DISQUALIFIED, now
from p2pbak.coordinator.http.common import caller
from p2pbak.net.validate import Body, HexId, fail, parse

routes = web.RouteTableDef()

MAX_IDS = 10_000
DELETE_BATCH = 1000  # deletions handed to a peer per request

PackIds = Annotated[list[HexId], Field(max_length=MAX_IDS)]


class PackIdsBody(Body):
    pack_ids: PackIds


class GarbageBody(Body):
    done: Annotated[list[HexId], Field(default_factory=list, max_length=DELETE_BATCH * 2)]


class LeaveBody(Body):
    pass


class LockBody(Body):
    exclusive: bool
    ttl: Annotated[int, Field(ge=10, le=3600)]
    holder: HexId | None = None  # this run of a command; the machine if absent
    command: Literal["backup", "restore", "check", "mount", "prune", "forget", ""] = ""
    machine_locked: bool = False  # it holds the machine's local lock (store/db/locks.py)


class UnlockBody(Body):
    holder: HexId | None = None


# how a holder's command reads in "machine 'nas' of this user ... right now"
DOING = {"backup": "backs up", "restore": "restores", "check": "checks",
         "mount": "has mounted the snapshots", "prune": "prunes", "forget": "forgets and prunes"}


@routes.get("/v1/packs")
async def list_packs(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    rows = await garbage.user_packs(coord, machine.user)
    return web.json_response({"packs": [{"id": r.id, "length": r.length, "created": r.created}
                                        for r in rows]})


@routes.post("/v1/packs/placements")
async def placements(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, PackIdsBody)
    found = await garbage.placements(coord, machine.user, body.pack_ids)
    return web.json_response({"packs": [{"id": p.id, "k": p.k, "n": p.n, "placed": p.placed,
                                         "online": p.online} for p in found]})


@routes.post("/v1/packs/drop")
async def drop(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, PackIdsBody)
    dropped = await garbage.drop(coord, machine.user, body.pack_ids)
    return web.json_response({"packs": dropped.packs, "fragments": dropped.fragments,
                              "bytes": dropped.bytes, "fragment_bytes": dropped.fragment_bytes})


@routes.post("/v1/garbage")
async def delete_list(request: web.Request) -> web.Response:
    """A peer agent confirms what it deleted and gets its next deletions, with tickets."""
    coord, machine = await caller(request)
    body = await parse(request, GarbageBody)
    return web.json_response({"deletes": await garbage.deletions(coord, machine.id, body.done,
                                                                 DELETE_BATCH)})


async def _progress(request: web.Request, start: bool) -> web.Response:
    coord, machine = await caller(request)
    if start:
        await parse(request, LeaveBody)
        state = await garbage.begin_leave(coord, machine.id)
        if state == DISQUALIFIED:
            fail(409, "this peer was disqualified by audits: its fragments are being "
                      "repaired elsewhere already; stop the agent")
    progress = await garbage.leave_progress(coord, machine.id)
    if progress is None:
        fail(404, "this machine has no peer: there is nothing to leave")
    return web.json_response({"state": progress.state, "fragments": progress.fragments,
                              "bytes": progress.bytes})


@routes.post("/v1/supply/leave")
async def leave(request: web.Request) -> web.Response:
    return await _progress(request, start=True)


@routes.get("/v1/supply/leave")
async def leave_status(request: web.Request) -> web.Response:
    return await _progress(request, start=False)


@routes.post("/v1/lock")
async def lock(request: web.Request) -> web.Response:
    """Take or renew this machine's repository lock (shared: backup, exclusive: prune)."""
    coord, machine = await caller(request)
    body = await parse(request, LockBody)
    other = await garbage.take_lock(coord, machine, body.exclusive, body.ttl, body.holder,
                                    body.command, body.machine_locked)
    if other is not None:
        what = DOING.get(other.command, "prunes" if other.exclusive else "backs up")
        fail(409, f"machine {other.machine!r} of this user {what} right now (its lock lapses "
                  f"within {max(0, other.expires - now())} s unless renewed): try again when "
                  "it has finished")
    return web.json_response({"ok": True, "expires": now() + body.ttl})


@routes.delete("/v1/lock")
async def unlock(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, UnlockBody) if request.can_read_body else UnlockBody()
    await garbage.release_lock(coord, machine, body.holder)
    return web.json_response({"ok": True})
