"""The peer agent: serves other users' fragments under the user's caps, and heartbeats.

Routes (docs/api.md, "Peer agent"): every fragment operation needs a coordinator-signed
ticket naming this peer, the operation and the fragment; each ticket works once. The user's
caps (§3.1) are hard limits: the space cap refuses stores (507), and the upload and download
caps throttle bytes sent and received (a supplier's download is a consumer's backup, its
upload a consumer's retrieval, Table 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2pbak import __version__, config
from p2pbak.config import Config, Supply, format_rate, format_size
from p2pbak.errors import P2pbakError
from p2pbak.net import tickets
from p2pbak.net.client import MAX_FRAGMENT, CoordinatorClient
from p2pbak.net.validate import error_middleware, fail, path_id
from p2pbak.store.fragments import FragmentStore, StoreError

log = logging.getLogger("p2pbak.peer")

CHUNK = 64 * 1024


class TokenBucket:
    """Average rate `rate` bytes/s with bursts up to one second's worth; 0 = unlimited."""

    def __init__(self, rate: int = 0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.waited = 0.0  # seconds spent holding bytes back, for status and tests
        self._clock, self._sleep = clock, sleep
        self._tokens = float(rate)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self._tokens = min(self._tokens, float(rate))

    async def take(self, n: int) -> None:
        """Wait until `n` bytes may pass (callers queue, so the cap holds across them)."""
        if self.rate <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(float(self.rate),
                               self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                pause = -self._tokens / self.rate
                self.waited += pause
                await self._sleep(pause)


@dataclass
class PeerState:
    store: FragmentStore
    peer_id: str
    ticket_key: Ed25519PublicKey
    caps: Supply = field(default_factory=Supply)
    reserved: int = 0  # bytes promised to stores in flight
    download: TokenBucket = field(default_factory=TokenBucket)  # bytes we receive
    upload: TokenBucket = field(default_factory=TokenBucket)  # bytes we send

    def __post_init__(self) -> None:
        self.set_caps(self.caps)

    def set_caps(self, caps: Supply) -> None:
        self.caps = caps
        self.download.set_rate(caps.download)
        self.upload.set_rate(caps.upload)

    def free_bytes(self) -> int:
        return self.store.free_bytes(self.caps.space, self.reserved)


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
                 f"{format_size(cap)} used)" if cap else "this peer's disk")
        fail(507, f"no space left under {where}: store the fragment elsewhere")


async def put_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "store")
    _check_room(state, request, t.size)
    _spend(state, t)
    state.reserved += t.size
    writer = state.store.writer(fid)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            if writer.size + len(chunk) > t.size:
                fail(413, f"body is larger than the ticket's {t.size} bytes")
            await state.download.take(len(chunk))
            writer.write(chunk)
        if writer.size != t.size:
            fail(422, f"received {writer.size} bytes, the ticket says {t.size}")
        if not writer.matches():
            fail(422, "the bytes do not hash (BLAKE3) to the fragment id: nothing stored")
        await asyncio.to_thread(writer.commit)
    finally:
        writer.abort()
        state.reserved -= t.size
    return web.json_response({"ok": True, "fragment_id": fid}, status=201)


async def get_fragment(request: web.Request) -> web.StreamResponse:
    state, fid, t = _admit(request, "fetch")
    _spend(state, t)
    data = await asyncio.to_thread(state.store.read, fid)
    if data is None:
        fail(404, f"this peer does not hold fragment {fid}")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = len(data)
    await resp.prepare(request)
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK):
        piece = view[offset:offset + CHUNK]
        await state.upload.take(len(piece))
        await resp.write(piece)
    await resp.write_eof()
    return resp


async def head_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "exists")
    _spend(state, t)
    return web.Response(status=200 if state.store.has(fid) else 404)


async def delete_fragment(request: web.Request) -> web.Response:
    state, fid, t = _admit(request, "delete")
    _spend(state, t)
    if await asyncio.to_thread(state.store.delete, fid):
        log.info("deleted fragment %s", fid[:12])
    return web.Response(status=204)


# -- the agent: serve, announce, heartbeat, stop on a signal ------------------------------

@dataclass
class Agent:
    """`p2pbak peer run`: one configured machine's fragment server and heartbeat loop."""

    config_path: Path
    storage: Path
    host: str = "127.0.0.1"
    port: int = 8421
    advertise: str = ""
    interval: float = 60.0
    grace: float = 5.0
    _cfg: Config | None = None
    _mtime: float = 0.0
    _online: bool | None = None  # last state logged (None: not yet known)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then finish in-flight transfers (up to `grace`)."""
        cfg = self._load()
        store = FragmentStore(self.storage)
        try:
            store.open()
        except StoreError as exc:
            raise P2pbakError(f"{exc}: choose a --storage folder this user can write") from None
        try:
            async with CoordinatorClient.from_config(cfg) as coord:
                key = await self._ticket_key(cfg, coord)
                app = make_app(store, peer_id=cfg.machine_id, ticket_key=key, caps=cfg.supply)
                # short lingering: a refused body is not drained past the caps for long
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.grace,
                                       lingering_time=2.0)
                await runner.setup()
                try:
                    await self._listen(runner)
                    log.info("serving fragments at %s (peer %s, storage %s)", self.url(),
                             cfg.machine_id, self.storage)
                    beat = asyncio.create_task(self._heartbeats(coord, app[STATE]))
                    await stop.wait()
                    log.info("stopping: finishing transfers in flight")
                    beat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beat
                finally:
                    await runner.cleanup()
        finally:
            store.close()

    def url(self) -> str:
        return self.advertise or f"http://{self.host}:{self.port}"

    def _load(self) -> Config:
        cfg = config.load(self.config_path)
        self._cfg, self._mtime = cfg, _mtime(cfg.path)
        if not self.advertise and self.host in ("0.0.0.0", "::", ""):
            raise P2pbakError(f"listening on all interfaces ({self.host}): give --advertise "
                              "URL with an address other peers can reach")
        return cfg

    async def _ticket_key(self, cfg: Config, coord: CoordinatorClient) -> Ed25519PublicKey:
        """The ticket key pinned at init; asked of the coordinator only if none was pinned."""
        hex_key = cfg.ticket_key
        if not hex_key:
            hex_key = str((await coord.health()).get("ticket_key", ""))
            log.warning("no ticket key pinned in %s: using the coordinator's", cfg.path)
        try:
            return tickets.load_public_key(hex_key)
        except ValueError:
            raise P2pbakError(f"the ticket key in {cfg.path} is malformed: "
                              "run `p2pbak recover` to fetch it again") from None

    async def _listen(self, runner: web.AppRunner) -> None:
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            raise P2pbakError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                              "stop what uses it or choose another --listen") from None

    async def _heartbeats(self, coord: CoordinatorClient, state: PeerState) -> None:
        """Announce, then heartbeat every interval; back off while the coordinator is away."""
        announced, delay = False, min(1.0, self.interval)
        while True:
            announced = announced and not self._reload(state)
            try:
                if not announced:
                    await coord.announce_peer(self.url(), state.caps)
                    announced = True
                answer = await coord.heartbeat(self.url(), state.store.stored_bytes,
                                               state.free_bytes())
            except P2pbakError as exc:
                announced = False  # the coordinator may have lost us: announce again
                self._note(False, str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.interval)
                continue
            self._note(True, "")
            self._check_key(answer)
            delay = min(1.0, self.interval)
            await asyncio.sleep(self.interval)

    def _reload(self, state: PeerState) -> bool:
        """Pick up new caps after `p2pbak supply set`; True if they changed."""
        assert self._cfg is not None
        mtime = _mtime(self._cfg.path)
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            cfg = config.load(self._cfg.path)
        except P2pbakError as exc:
            log.warning("keeping the current caps: %s", exc)
            return False
        changed = cfg.supply != state.caps
        if changed:
            state.set_caps(cfg.supply)
            log.info("caps changed: space %s, upload %s, download %s",
                     *(_cap(v, r) for v, r in ((cfg.supply.space, False),
                                               (cfg.supply.upload, True),
                                               (cfg.supply.download, True))))
        self._cfg = cfg
        return changed

    def _note(self, online: bool, why: str) -> None:
        """One log line per change of state, not one per failed heartbeat."""
        if online == self._online:
            return
        self._online = online
        if online:
            log.info("connected to the coordinator at %s", self._cfg.coordinator
                     if self._cfg else "?")
        else:
            log.warning("coordinator unavailable (%s); still serving fragments, retrying", why)

    def _check_key(self, answer: dict[str, object]) -> None:
        key = answer.get("ticket_key")
        if self._cfg and self._cfg.ticket_key and key and key != self._cfg.ticket_key:
            log.warning("the coordinator now signs with another ticket key than the one "
                        "pinned in %s: tickets it issues are refused", self._cfg.path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _cap(value: int, rate: bool) -> str:
    if not value:
        return "unlimited"
    return format_rate(value) if rate else format_size(value)
