"""Coordinator routes for peer agents (announce, heartbeat) and the caller's status."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import AfterValidator

from p2pbak.coordinator import peers
from p2pbak.coordinator.http import reach
from p2pbak.coordinator.http.common import caller, ok
from p2pbak.net.validate import Body, CapsBody, Count, fail, parse

routes = web.RouteTableDef()


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if len(url) > 2048 or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, e.g. http://203.0.113.5:8421")
    return url


Url = Annotated[str, AfterValidator(_check_url)]


class Announce(CapsBody):
    url: Url


class Heartbeat(Body):
    url: Url
    stored_bytes: Count
    free_bytes: Count


@routes.post("/v1/peer")
async def announce(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, Announce)
    rejoined = await peers.announce(coord, machine.id, url=body.url, space=body.space,
                                    upload=body.upload, download=body.download)
    return web.json_response({"peer_id": machine.id, "rejoined": rejoined})


@routes.post("/v1/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, Heartbeat)
    known = await peers.heartbeat(coord, machine.id, url=body.url,
                                  stored_bytes=body.stored_bytes, free_bytes=body.free_bytes)
    if not known:
        fail(409, "this machine has not announced a peer: POST /v1/peer first")
    return ok(ticket_key=coord.ticket_key)


@routes.post("/v1/peer/offline")
async def sign_off(request: web.Request) -> web.Response:
    """The caller's agent is stopping: offline now, not after the heartbeat timeout."""
    coord, machine = await caller(request)
    await parse(request, Body)  # no fields: anything else sent is refused
    if not await peers.sign_off(coord, machine.id):
        fail(409, "this machine has not announced a peer: POST /v1/peer first")
    return ok()


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    answer = await peers.status(coord, machine)
    answer["reached"] = await reach.reach_of(request.app, await peers.get(coord, machine.id))
    return web.json_response(answer)
