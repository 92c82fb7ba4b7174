"""What every coordinator route module shares: the app key and the caller lookup."""

from __future__ import annotations

from aiohttp import web

from p2pbak.coordinator.service import Coordinator
from p2pbak.net.auth import authenticate
from p2pbak.store.db.users import Machine

COORD = web.AppKey("coordinator", Coordinator)


def coordinator(request: web.Request) -> Coordinator:
    return request.app[COORD]


async def caller(request: web.Request) -> tuple[Coordinator, Machine]:
    """The coordinator and the authenticated calling machine (401 otherwise)."""
    coord = coordinator(request)
    return coord, await authenticate(coord.db, request)


def ok(status: int = 200, **fields: object) -> web.Response:
    return web.json_response({"ok": True, **fields}, status=status)
