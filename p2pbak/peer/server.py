"""The peer fragment server: other users' fragments, served under the user's caps.

Routes (docs/api.md, "Peer agent"): every fragment operation needs a coordinator-signed
ticket naming this peer, the operation and the fragment; each ticket works once. The user's
caps (§3.1) are hard limits: the space cap refuses stores (507), and the upload and download
caps throttle bytes sent and received (a supplier's download is a consumer's backup, its
upload a consumer's retrieval, Table 1).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, StringConstraints

from p2pbak import __version__
from p2pbak.config import Supply, format_size
from p2pbak.net import proofs, tickets
from p2pbak.net.api import MAX_FRAGMENT
from p2pbak.net.ratelimit import TokenBucket
from p2pbak.net.validate import Body, body_deadline, error_middleware, fail, parse, path_id
from p2pbak.store.fragments import FragmentStore

log = logging.getLogger("p2pbak.peer")

CHUNK = 64 * 1024


@dataclass
class PeerState:
    store: FragmentStore
    peer_id: str
    ticket_key: Ed25519PublicKey
    caps: Supply = field(default_factory=Supply)
    reserved: int = 0  # bytes promised to stores in flight
    # called with (ticket, wire form) after each transfer done (a 404 is not), e.g. receipts
    served_hooks: list[Callable[[tickets.Ticket, str], None]] = field(default_factory=list)
    download: TokenBucket = field(default_factory=TokenBucket)  # bytes we receive
    upload: TokenBucket = field(default_factory=TokenBucket)  # bytes we send
    # dials a client from our listening port, for a hole-punched link (peer/holes.py):
    # (its public ip, port) → our public {"ip", "port", "pin"}; None: this peer punches none
    opener: Callable[[str, int], Awaitable[dict[str, object]]] | None = None

    def __post_init__(self) -> None:
        self.set_caps(self.caps)

    def set_caps(self, caps: Supply) -> None:
        self.caps = caps
        self.download.set_rate(caps.download or 0)  # the bucket's 0: no cap
        self.upload.set_rate(caps.upload or 0)

    def free_bytes(self) -> int:
        return self.store.free_bytes(self.caps.space, self.reserved)

    def served(self, request: web.Request, t: tickets.Ticket) -> None:
        wire = request.headers.get(tickets.HEADER, "")
        if wire and t.via and not _from_here(request):  # its relay carried none of it
            wire += tickets.DIRECT
        for hook in self.served_hooks:
            hook(t, wire)


def _from_here(request: web.Request) -> bool:
    """The request came from this machine: what our relay link brings is replayed to us
    by peer/reach.py, from our own address."""
    transport = request.transport
    if transport is None:
        return False
    peer, mine = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    return bool(peer and mine) and peer[0] == mine[0]


STATE = web.AppKey("peer_state", PeerState)


def make_app(store: FragmentStore, *, peer_id: str, ticket_key: Ed25519PublicKey,
             caps: Supply | None = None) -> web.Application:
    """The fragment server over an opened store, trusting tickets signed by `ticket_key`."""
    app = web.Application(middlewares=[error_middleware])
    app[STATE] = PeerState(store, peer_id, ticket_key, caps or Supply())
    app.add_routes([
        web.get("/v1/health", health),
        web.put("/v1/fragments/{fragment_id}", put_fragment),
        web.get("/v1/fragments/{fragment_id}", get_fragment, allow_head=False),
        web.head("/v1/fragments/{fragment_id}", head_fragment),
        web.delete("/v1/fragments/{fragment_id}", delete_fragment),
        web.post("/v1/fragments/{fragment_id}/proof", prove_fragment),
        web.post("/v1/punch", punch),
    ])
    return app


def _admit(request: web.Request, op: str) -> tuple[PeerState, str, tickets.Ticket]:
    """Check the fragment id, then the ticket (signature, peer, op, fragment, expiry)."""
    state = request.app[STATE]
    fid = path_id(request, "fragment_id")
    try:
        t = tickets.verify(state.ticket_key, request.headers.get(tickets.HEADER), op=op,
                           fragment=fid, to=state.peer_id)
    except tickets.TicketError as exc:
        # wrong peer/op/fragment is a valid ticket for something else: forbidden
        status = 403 if str(exc).startswith("ticket is for") else 401
        fail(status, f"{exc}: ask the coordinator for a new ticket")
    return state, fid, t


def _spend(state: PeerState, t: tickets.Ticket) -> None:
    if not state.store.use_ticket(t.id, t.exp):
        fail(409, "ticket already used: ask the coordinator for a new one")


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"ok": True, "peer_id": state.peer_id, "version": __version__,
                              "stored_bytes": state.store.stored_bytes,
                              "free_bytes": state.free_bytes()})


def _check_room(state: PeerState, request: web.Request, size: int) -> None:
    """Refuse before reading a byte: over the size caps (413) or out of space (507)."""
    if size > MAX_FRAGMENT:
        fail(413, f"fragment of {size} bytes is over the {format_size(MAX_FRAGMENT)} cap")
    declared = request.content_length
    if declared is not None and declared > size:
        fail(413, f"body of {declared} bytes is larger than the ticket's {size}")
    if declared is not None and declared < size:
        fail(422, f"body of {declared} bytes is not the ticket's {size}")
    if size > state.free_bytes():
        cap = state.caps.space
        where = (f"this peer's space cap ({format_size(state.store.stored_bytes)} of "
                 f"{format_size(cap)} used)" if cap is not None else "this peer's disk")
        fail(507, f"no space left under {where}: store the fragment elsewhere")


async def put_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "store")
    _check_room(state, request, t.size)
    _spend(state, t)
    state.reserved += t.size
    try:
        await _receive(request, state, fid, t.size)
    except ConnectionResetError:  # the sender went away mid-body: nothing stored, no fault
        fail(400, "the upload was cut off before its end: send it again")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        fail(507, "this peer's disk is full: store the fragment elsewhere")
    finally:
        state.reserved -= t.size
    state.served(request, t)
    return web.json_response({"ok": True, "fragment_id": fid}, status=201)


async def _receive(request: web.Request, state: PeerState, fid: str, size: int) -> None:
    """Body → temp file (throttled, hashed) → checked → durable under its id."""
    writer = state.store.writer(fid)
    try:
        try:
            async with asyncio.timeout(body_deadline(size, state.download.rate)):
                async for chunk in request.content.iter_chunked(CHUNK):
                    if writer.size + len(chunk) > size:
                        fail(413, f"body is larger than the ticket's {size} bytes")
                    await state.download.take(len(chunk))
                    writer.write(chunk)
        except TimeoutError:
            fail(408, "the fragment arrived too slowly: send it again with a new ticket")
        if writer.size != size:
            fail(422, f"received {writer.size} bytes, the ticket says {size}")
        if not writer.matches():
            fail(422, "the bytes do not hash (BLAKE3) to the fragment id: nothing stored")
        # shielded: a shutdown past the grace period must not interrupt the rename
        await asyncio.shield(asyncio.to_thread(writer.commit))
    finally:
        writer.abort()


async def get_fragment(request: web.Request) -> web.StreamResponse:
    state, fid, t = _admit(request, "fetch")
    _spend(state, t)
    data = await asyncio.to_thread(state.store.read, fid)
    if data is None:
        fail(404, f"this peer does not hold fragment {fid}")
    if state.upload.rate <= 0:  # no cap: one write
        state.served(request, t)
        return web.Response(body=data, content_type="application/octet-stream")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = len(data)
    await resp.prepare(request)
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK):
        piece = view[offset:offset + CHUNK]
        await state.upload.take(len(piece))
        await resp.write(piece)
    await resp.write_eof()
    state.served(request, t)
    return resp


async def head_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "exists")
    _spend(state, t)
    # verified like a fetch: a copy that rotted must not count as held
    if await asyncio.to_thread(state.store.read, fid) is None:
        return web.Response(status=404)
    state.served(request, t)
    return web.Response(status=200)


async def delete_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "delete")
    _spend(state, t)
    if await asyncio.to_thread(state.store.delete, fid):
        log.info("deleted fragment %s", fid[:12])
    state.served(request, t)
    return web.Response(status=204)


# -- storage proofs (audits: formats.md §11) -------------------------------------------

Nonce = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")]


class ChallengeBody(Body):
    nonce: Nonce
    indices: Annotated[list[Annotated[int, Field(ge=0, lt=2**40)]],
                       Field(min_length=1, max_length=proofs.MAX_CHALLENGE)]


async def prove_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "prove")
    body = await parse(request, ChallengeBody)
    _spend(state, t)
    # read verifies the whole fragment against its id: a rotted copy has nothing to prove
    data = await asyncio.to_thread(state.store.read, fid)
    if data is None:
        fail(404, f"this peer does not hold fragment {fid}")
    try:
        answer = await asyncio.to_thread(proofs.prove, data, body.indices)
    except proofs.BadProof as exc:
        fail(400, f"bad challenge: {exc}")
    state.served(request, t)
    return web.json_response({"nonce": body.nonce, "proofs": [p.to_dict() for p in answer]})


# -- hole punching (net/punch.py) ------------------------------------------------------

class PunchBody(Body):
    ip: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")]
    port: Annotated[int, Field(ge=1, le=65535)]


async def punch(request: web.Request) -> web.Response:
    """Dial the client back from our listening port while it dials us: only for a holder of
    a valid unspent ticket to this peer (of any op), so that no stranger makes us connect
    to addresses of its choosing."""
    state = request.app[STATE]
    wire = request.headers.get(tickets.HEADER)
    try:
        fields = tickets.unverified(wire) if wire else {}
        t = tickets.verify(state.ticket_key, wire, op=str(fields.get("op")),
                           fragment=str(fields.get("fragment")), to=state.peer_id)
    except tickets.TicketError as exc:
        status = 403 if str(exc).startswith("ticket is for") else 401
        fail(status, f"{exc}: punching needs a ticket to this peer")
    if state.store.ticket_used(t.id):
        fail(409, "ticket already used: punching needs an unspent one")
    body = await parse(request, PunchBody)
    if state.opener is None:
        fail(404, "this peer does not punch holes (it is reached directly or on loopback)")
    return web.json_response(await state.opener(body.ip, body.port))
