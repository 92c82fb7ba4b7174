"""The relay: carries HTTP for peers that nothing can dial (behind NAT, CGNAT, firewalls).

A relayed peer connects out to `GET /v1/relay/{peer_id}/connect` (a WebSocket) with a relay
ticket the coordinator signed for it and this relay; other machines then reach that peer at
`{relay}/v1/relay/{peer_id}` + the usual path, e.g. `.../v1/fragments/{id}`. Each such
request is one stream on the peer's WebSocket (relay_mux). Any reachable peer can relay
(`peer run --relay`, under its bandwidth cap) and so can the coordinator (`serve --relay`).
The relay learns no more than any router on the path: it forwards bytes, not meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2pbak.net import tickets
from p2pbak.net.ratelimit import TokenBucket
from p2pbak.net.relay_mux import CHUNK, OPEN, Mux, Stream, StreamReset
from p2pbak.net.urls import RELAY_PREFIX as PREFIX
from p2pbak.net.validate import fail

log = logging.getLogger("p2pbak.relay")

COORDINATOR_ID = "coordinator"  # the `to` of tickets for the coordinator's own relay
HEAD_TIMEOUT = 60.0  # seconds a relayed peer may take to start its answer
# headers that cross the relay; hop-by-hop and identifying ones do not
REQUEST_HEADERS = (tickets.HEADER, "Content-Type", "Content-Length")


@dataclass
class RelayState:
    key: Callable[[], Ed25519PublicKey]  # the coordinator's ticket key
    relay_id: str  # this relay's name in tickets: a machine id, or COORDINATOR_ID
    bucket: TokenBucket = field(default_factory=TokenBucket)  # the bandwidth cap
    tunnels: dict[str, Mux] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)  # relay ticket id → its expiry
    carried: int = 0  # body bytes forwarded, both ways


RELAY = web.AppKey("relay", RelayState)


def add_relay(app: web.Application, state: RelayState) -> None:
    app[RELAY] = state
    app.on_shutdown.append(close_tunnels)
    app.add_routes([web.get(PREFIX + "/{peer_id}/connect", connect),
                    web.route("*", PREFIX + "/{peer_id}/{tail:.*}", forward)])


def peer_id_of(request: web.Request) -> str:
    """The machine id in the path (lowercase hex digits; a relayed peer's URL may add
    `~` and its link key, see net/seal.py), 400 when it is not one."""
    value = request.match_info["peer_id"].split("~", 1)[0]
    if not 0 < len(value) <= 64 or any(c not in "0123456789abcdef" for c in value):
        fail(400, "peer_id must be a machine id (lowercase hex digits)")
    return value


async def close_tunnels(app: web.Application) -> None:
    """Close every relayed peer's link (they reconnect elsewhere): at shutdown."""
    if RELAY in app:
        for mux in list(app[RELAY].tunnels.values()):
            await mux.ws.close()


def relay_url(base: str, peer_id: str) -> str:
    return f"{base.rstrip('/')}{PREFIX}/{peer_id}"


async def connect(request: web.Request) -> web.WebSocketResponse:
    state = request.app[RELAY]
    peer_id = peer_id_of(request)
    try:
        t = tickets.verify(state.key(), request.headers.get(tickets.HEADER), op="relay",
                           fragment=peer_id, to=state.relay_id)
    except tickets.TicketError as exc:
        fail(401, f"{exc}: ask the coordinator (POST /v1/reach) for a relay ticket")
    if t.id in state.spent:
        fail(409, "relay ticket already used: ask the coordinator for a new one")
    now = time.time()
    state.spent = {i: exp for i, exp in state.spent.items() if exp >= now}  # expired: moot
    state.spent[t.id] = t.exp
    ws = web.WebSocketResponse(heartbeat=15, max_msg_size=CHUNK + 1024)
    await ws.prepare(request)
    mux = Mux(ws, first_id=1)
    old = state.tunnels.get(peer_id)
    state.tunnels[peer_id] = mux
    if old is not None:
        await old.ws.close()
    log.info("relaying for peer %s", peer_id)
    try:
        await mux.run()
    finally:
        if state.tunnels.get(peer_id) is mux:
            del state.tunnels[peer_id]
        log.info("peer %s left this relay", peer_id)
    return ws


async def forward(request: web.Request) -> web.StreamResponse:
    """One request for a relayed peer, as one stream on its WebSocket."""
    state = request.app[RELAY]
    peer_id = peer_id_of(request)
    mux = state.tunnels.get(peer_id)
    if mux is None:
        fail(503, f"peer {peer_id} is not connected to this relay: ask the coordinator "
                  "for its current address")
    path = "/" + request.match_info["tail"] + (f"?{request.query_string}"
                                               if request.query_string else "")
    headers = {h: request.headers[h] for h in REQUEST_HEADERS if h in request.headers}
    stream = mux.open()
    pump: asyncio.Task[None] | None = None
    try:
        await stream.send_head(OPEN, {"method": request.method, "path": path,
                                      "headers": headers})
        pump = asyncio.create_task(_pump(request, stream, state))
        try:
            # the body may take long (a big fragment on a slow link); the answer may come
            # before its end (a refusal); once all is sent, the peer has HEAD_TIMEOUT
            await asyncio.wait({pump, stream.head}, return_when=asyncio.FIRST_COMPLETED)
            head = await asyncio.wait_for(stream.head, HEAD_TIMEOUT)
        except (StreamReset, TimeoutError) as exc:
            fail(503, f"peer {peer_id} did not answer through this relay "
                      f"({exc or 'timeout'}): ask the coordinator for its current address")
        return await _answer(request, stream, head, state)
    finally:
        if pump is not None:  # the body must not be read after the handler returns
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
        await stream.reset("done")


async def _pump(request: web.Request, stream: Stream, state: RelayState) -> None:
    """The request body into the stream, under the relay's cap and the stream's credit."""
    with contextlib.suppress(StreamReset, ConnectionError):
        async for chunk in request.content.iter_chunked(CHUNK):
            await state.bucket.take(len(chunk))
            state.carried += len(chunk)
            await stream.write(chunk)
        await stream.end()


async def _answer(request: web.Request, stream: Stream, head: dict[str, object],
                  state: RelayState) -> web.StreamResponse:
    raw = head.get("headers")
    headers = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    length = headers.pop("Content-Length", None)
    status = head.get("status")
    resp = web.StreamResponse(status=status if isinstance(status, int) else 502,
                              headers=headers)
    if length is not None and length.isdigit():
        resp.content_length = int(length)
    await resp.prepare(request)
    try:
        async for piece in stream.body():
            await state.bucket.take(len(piece))
            state.carried += len(piece)
            await resp.write(piece)
        await resp.write_eof()
    except StreamReset:
        # the peer's link broke mid-answer: cut the connection so the caller sees it
        if request.transport is not None:
            request.transport.close()
    except ConnectionError:
        pass  # the caller went away (e.g. it had enough fragments): nothing to answer
    return resp

