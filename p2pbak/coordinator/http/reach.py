"""Coordinator route `POST /v1/reach`: how can other machines reach this peer?

Like libp2p's AutoNAT: the peer names the addresses it listens on; the coordinator adds the
address it sees the request come from (a NAT router's public side), dials each back with
`GET /v1/health` and answers which reached *this* peer (its peer id in the answer). If none
did, the peer is behind a NAT or firewall, and the coordinator assigns it a relay (circuit
relay v2's reservation): the least-loaded online peer that offered to relay, else the
coordinator itself if it runs `serve --relay`, with a signed relay ticket for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING, Annotated

import aiohttp
from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import peers as coordinator_peers
from p2pbak.coordinator import reach as reach_state
from p2pbak.coordinator.http.common import COORD, caller, coordinator
from p2pbak.coordinator.reach import Reach
from p2pbak.net import peertls, urls
from p2pbak.net.relay import COORDINATOR_ID, RELAY, peer_id_of
from p2pbak.net.urls import relay_base
from p2pbak.net.validate import Body, fail, parse

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

routes = web.RouteTableDef()

DIAL_TIMEOUT = 3.0  # seconds per dial-back
PUNCHED_FRESH = 3600  # seconds a relayed peer counts as hole-punched after its last link
MAX_ADDRESSES = 16

Port = Annotated[int, Field(ge=1, le=65535)]
Address = Annotated[str, Field(min_length=1, max_length=64)]
# "IPv4:port" that the peer's router forwards to it (UPnP, NAT-PMP: peer/portmap.py)
Mapped = Annotated[str, Field(pattern=r"^[0-9.]{7,15}:[0-9]{1,5}$")]


class ReachBody(Body):
    port: Port
    addresses: list[Address] = Field(default_factory=list, max_length=MAX_ADDRESSES)
    relay: bool = False  # offers to relay for others when reachable
    avoid: list[str] = Field(default_factory=list, max_length=8)  # relays that just failed
    scheme: Annotated[str, Field(pattern="^https?$")] = "http"
    mapped: list[Mapped] = Field(default_factory=list, max_length=4)
    mapped_by: Annotated[str, Field(pattern="^(|UPnP|NAT-PMP)$")] = ""  # which protocol
    pin: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] = ""  # its TLS certificate's


def add_reach(app: web.Application) -> None:
    app.add_routes(routes)


def _url(body: ReachBody, host: str, port: int) -> str:
    """The URL to dial: for a peer serving TLS, with its certificate pinned (net/peertls)."""
    url = f"{body.scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    return peertls.pinned(url, body.pin) if body.pin else url


def _split(mapped: str) -> tuple[str, int]:
    host, _, port = mapped.rpartition(":")
    if not 0 < int(port) < 65536:
        fail(400, f"mapped port out of range in {mapped!r}")
    return host, int(port)


def _dialable(host: str, observed: str) -> bool:
    """Worth dialling: a literal IP, loopback only when the peer itself came over it."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        return False
    return not ip.is_loopback or ipaddress.ip_address(observed).is_loopback


async def _dial(session: aiohttp.ClientSession, url: str, peer_id: str) -> str:
    """'' when `url` reaches this very peer, else why not."""
    try:
        target, check = urls.target(url)
        async with session.get(f"{target}/v1/health", ssl=check) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    if not isinstance(body, dict) or body.get("peer_id") != peer_id:
        return "another server answers there"
    return ""


@routes.post("/v1/reach")
async def reach(request: web.Request) -> web.Response:
    c, machine = await caller(request)
    body = await parse(request, ReachBody)
    observed = request.remote or ""
    hosts = list(dict.fromkeys([*body.addresses, observed]))
    if body.pin and body.scheme != "https":
        fail(400, "a pinned certificate needs scheme https")
    urls = [_url(body, h, body.port) for h in hosts if _dialable(h, observed)]
    mapped = [_url(body, *_split(m)) for m in body.mapped
              if _dialable(_split(m)[0], observed)]
    urls = list(dict.fromkeys(mapped + urls))  # a mapping first: it is why it was made
    timeout = aiohttp.ClientTimeout(total=DIAL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        why = await asyncio.gather(*(_dial(session, u, machine.id) for u in urls))
    reachable = [u for u, w in zip(urls, why, strict=True) if not w]
    answer: dict[str, object] = {
        "observed": observed, "reachable": reachable,
        "tried": [{"url": u, "ok": not w, "error": w} for u, w in zip(urls, why, strict=True)],
        "relay": None}
    if reachable:
        await reach_state.record(c, machine.id, Reach(
            public=tuple(reachable), mapped=tuple(u for u in reachable if u in mapped),
            mapped_by=body.mapped_by, offer=reachable[0] if body.relay else None))
        return web.json_response(answer)
    await reach_state.record(c, machine.id, Reach())
    answer["relay"] = await _assign(request, machine.id, set(body.avoid))
    return web.json_response(answer)


class PunchedBody(Body):
    links: Annotated[int, Field(ge=0, le=2**31)]  # links punched since the peer started


@routes.post("/v1/punched")
async def punched(request: web.Request) -> web.Response:
    """A relayed peer hole-punched another direct link (peer/holes.py): `status` says so."""
    c, machine = await caller(request)
    body = await parse(request, PunchedBody)
    if not await reach_state.punched(c, machine.id, body.links):
        fail(409, "this peer has not asked POST /v1/reach yet")
    return web.json_response({"links": body.links})


@routes.get("/v1/observed")
async def observed(request: web.Request) -> web.Response:
    """The address and port this request came from: what a NAT router maps the caller's
    local port to, for hole punching (net/punch.py)."""
    await caller(request)
    return where_from(request)


def where_from(request: web.Request) -> web.Response:
    """`{"ip", "port"}` of the request's sender, as seen here."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        fail(400, "cannot tell where this request comes from")
    return web.json_response({"ip": peer[0], "port": peer[1]})


@routes.get("/v1/reach/{peer_id}")
async def peer_reach(request: web.Request) -> web.Response:
    """A peer's current URL and how it is reached (clients re-ask when a relay fails)."""
    c, _ = await caller(request)
    peer = await coordinator_peers.get(c, peer_id_of(request))
    if peer is None:
        fail(404, "no such peer: it has never announced itself")
    return web.json_response({"peer_id": peer.id, "url": peer.url,
                              "online": peer.online(c.online_window),
                              "reached": await reach_of(request.app, peer)})


async def _first_alive(c: Coordinator, choices: list[tuple[str, str]]) -> tuple[str, str]:
    """The first relay that answers now; one that does not stops being offered (it died
    since it last proved reachable, e.g. the one a peer just asked to avoid)."""
    timeout = aiohttp.ClientTimeout(total=DIAL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for rid, url in choices:
            if not await _dial(session, url, rid):
                return rid, url
            await reach_state.withdraw(c, rid)
    return "", ""


async def reach_of(app: web.Application,
                   peer: coordinator_peers.Peer | None) -> dict[str, str]:
    """How others reach `peer`: public (dialled back), relayed (via which relay),
    hole-punched (relayed, and it punched a direct link within the hour: the relay is the
    rendezvous), direct (an address it advertised, not checked), none (no peer here)."""
    if peer is None:
        return {"how": "none"}
    reach = await reach_state.get(app[COORD], peer.id)
    base = relay_base(peer.url)
    if base:
        fresh = reach.punched and time.time() - (reach.punched_at or 0) < PUNCHED_FRESH
        how = {"how": "hole-punched", "links": reach.punched} if fresh else {"how": "relayed"}
        return {**how, "via": reach.relay_id or base, "url": peer.url, "relay_url": base}
    if peer.url in reach.mapped:
        return {"how": "port-mapped", "url": peer.url, "via": reach.mapped_by}
    return {"how": "public" if peer.url in reach.public else "direct", "url": peer.url}


async def _assign(request: web.Request, peer_id: str,
                  avoid: set[str]) -> dict[str, str] | None:
    """The least-loaded online relay peer not avoided, else the coordinator's own relay."""
    c = coordinator(request)
    rid, url = await _first_alive(c, await reach_state.relay_choices(c, peer_id, avoid))
    if not rid and RELAY in request.app and COORDINATOR_ID not in avoid:
        rid, url = COORDINATOR_ID, ""  # "": the coordinator's URL, as the peer knows it
    if not rid:
        return None
    await reach_state.assign(c, peer_id, rid)  # transfer tickets to it now name its relay
    ticket = c.ticket(op="relay", fragment=peer_id, size=0, from_=peer_id, to=rid)
    return {"relay_id": rid, "url": url, "ticket": ticket}
