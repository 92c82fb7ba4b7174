"""Coordinator routes for peer agents (announce, heartbeat) and the caller's status."""

from __future__ import annotations

import random
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator

from p2pbak.coordinator import accounts, placement
from p2pbak.net import coordinator_reach
from p2pbak.net.coordinator_common import caller, ok
from p2pbak.net.validate import Body, Count, fail, parse
from p2pbak.store import coordinator_blobs, coordinator_packs, coordinator_peers

routes = web.RouteTableDef()

STATUS_PACK_SIZE = 16 * 1024 * 1024  # the usual pack, for the predicted availability


def _check_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if len(url) > 2048 or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, e.g. http://203.0.113.5:8421")
    return url


Url = Annotated[str, AfterValidator(_check_url)]


class Announce(Body):
    url: Url
    space: Count
    upload: Count
    download: Count


class Heartbeat(Body):
    url: Url
    stored_bytes: Count
    free_bytes: Count


@routes.post("/v1/peer")
async def announce(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, Announce)
    await coordinator_peers.announce(coord.db, peer_id=machine.id, url=body.url,
                                     subnet=placement.subnet_of(body.url), space=body.space,
                                     upload=body.upload, download=body.download)
    return web.json_response({"peer_id": machine.id})


@routes.post("/v1/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, Heartbeat)
    known = await coordinator_peers.heartbeat(
        coord.db, peer_id=machine.id, url=body.url, subnet=placement.subnet_of(body.url),
        stored_bytes=body.stored_bytes, free_bytes=body.free_bytes)
    if not known:
        fail(409, "this machine has not announced a peer: POST /v1/peer first")
    return ok(ticket_key=coord.ticket_key)


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    db = coord.db
    peer = await coordinator_peers.get(db, machine.id)
    packs, backed_up = await coordinator_packs.totals(db, machine.user)
    others = await coordinator_peers.online(db, coord.online_window, exclude=machine.id)
    try:
        code = placement.place(others, STATUS_PACK_SIZE, random.Random(machine.id)).code
    except placement.NotEnoughPeers:
        code = None
    return web.json_response({
        "user": machine.user,
        "machine_id": machine.id,
        "peer_online": peer is not None and peer.online(coord.online_window),
        "snapshots": await coordinator_blobs.count(db, machine.user, "snapshot"),
        "indexes": await coordinator_blobs.count(db, machine.user, "index"),
        "packs": packs,
        "bytes_backed_up": backed_up,
        "bytes_stored_for_others": peer.stored_bytes if peer is not None else 0,
        "peers_online": len(others) + (1 if peer is not None and
                                       peer.online(coord.online_window) else 0),
        "code": None if code is None else {
            "k": code.k, "n": code.n, "repair": code.repair, "success": code.success,
            "availability": code.availability, "meets_target": code.meets_target},
        "availability": None if code is None else code.availability,
        "account": await accounts.account_summary(coord, machine.user),  # §2.4 bank
        "reached": coordinator_reach.reach_of(request.app, peer),  # how others reach it
    })
