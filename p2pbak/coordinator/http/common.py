"""What every coordinator route module shares: the app key and the caller lookup."""

from __future__ import annotations

from aiohttp import web

from p2pbak.coordinator.credentials import authenticate
from p2pbak.coordinator.identity import Machine
from p2pbak.coordinator.service import Coordinator
from p2pbak.net.auth import bearer
from p2pbak.net.validate import fail

COORD = web.AppKey("coordinator", Coordinator)


def coordinator(request: web.Request) -> Coordinator:
    return request.app[COORD]


async def caller(request: web.Request) -> tuple[Coordinator, Machine]:
    """The coordinator and the authenticated calling machine (401 otherwise)."""
    coord = coordinator(request)
    machine_id, secret = bearer(request)
    found = await authenticate(coord, machine_id, secret)
    if found is None:
        fail(401, "wrong machine token: run `p2pbak recover` to register this machine again")
    return coord, found


def ok(status: int = 200, **fields: object) -> web.Response:
    return web.json_response({"ok": True, **fields}, status=status)
