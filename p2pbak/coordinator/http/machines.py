"""Coordinator routes for a user's machines: list them, revoke a lost or stolen one."""

from __future__ import annotations

from aiohttp import web

from p2pbak.coordinator import machines
from p2pbak.coordinator.http.common import caller, ok
from p2pbak.net.validate import fail

routes = web.RouteTableDef()


@routes.get("/v1/machines")
async def list_machines(request: web.Request) -> web.Response:
    coord, me = await caller(request)
    rows = await machines.list_machines(coord.db, me.user)
    return web.json_response({"machines": [
        {"id": m.id, "name": m.name, "created": m.created, "revoked": m.revoked,
         "peer_state": m.peer_state, "last_seen": m.last_seen, "this": m.id == me.id}
        for m in rows]})


@routes.post("/v1/machines/{machine_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    coord, me = await caller(request)
    target = request.match_info["machine_id"]
    refused = await machines.revoke_other(coord.db, me.user, me.id, target)
    if refused == "self":
        fail(409, "a machine cannot revoke itself: run `p2pbak machines revoke` on another "
                  "of your machines (or `p2pbak recover` on a new one first)")
    if refused is not None:
        fail(404, f"you have no machine {target!r}: list them with `p2pbak machines list`")
    return ok(machine_id=target)
