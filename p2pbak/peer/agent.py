"""The peer agent process (`p2pbak peer run`): serve fragments, announce, heartbeat, stop.

The coordinator may come and go; the agent keeps serving fragments while it is away,
retries with backoff, and logs one line per change of state rather than one per failure.
Other duties plug in as `workers` (long-running loops, e.g. polling for tasks) and
`heartbeat_hooks` (acting on what a heartbeat answer carries), both given an AgentContext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2pbak import config
from p2pbak.config import Config, format_rate, format_size
from p2pbak.errors import P2pbakError
from p2pbak.net import peertls, seal, tickets
from p2pbak.net.api import CoordinatorClient, PeerClient
from p2pbak.net.punch import Links
from p2pbak.net.ratelimit import TokenBucket
from p2pbak.net.relay import RelayState, add_relay
from p2pbak.net.validate import HEADER_TIMEOUT
from p2pbak.peer.holes import HoleOpener
from p2pbak.peer.reach import Reached, Reacher
from p2pbak.peer.server import STATE, PeerState, make_app
from p2pbak.store.fragments import FragmentStore, StoreError

log = logging.getLogger("p2pbak.peer")


@dataclass
class AgentContext:
    """What the agent's background workers and heartbeat hooks get."""

    cfg: Config
    coord: CoordinatorClient
    peers: PeerClient
    state: PeerState
    url: str


# A worker runs beside the heartbeats until the agent stops (it is cancelled then); one
# that fails is logged and restarted. A heartbeat hook sees every heartbeat answer.
Worker = Callable[[AgentContext], Awaitable[None]]
HeartbeatHook = Callable[[AgentContext, dict[str, Any]], Awaitable[None]]
ServedHook = Callable[[tickets.Ticket, str], None]
RESTART_DELAY = 5.0
SIGN_OFF_TIMEOUT = 3.0  # seconds a stopping agent waits to tell the coordinator


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
    workers: list[Worker] = field(default_factory=list)
    heartbeat_hooks: list[HeartbeatHook] = field(default_factory=list)
    served_hooks: list[ServedHook] = field(default_factory=list)  # see PeerState
    relay: bool = False  # relay for peers behind NAT (when this one is reachable)
    relay_rate: int = 0  # bytes/s cap on what it relays, 0: none
    port_mapping: bool = True  # ask the router to forward a port (UPnP, NAT-PMP: peer/portmap.py)
    tls_pin: str = ""  # our certificate's pin once we serve TLS (beyond loopback)
    reached: Reached | None = None  # how others reach us, once known (net/peer_reach)
    _url_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _cfg: Config | None = None
    _mtime: float = 0.0
    _online: bool | None = None  # last state logged (None: not yet known)
    _hook_errors: dict[int, str] = field(default_factory=dict)
    _key_warned: str = ""

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then finish in-flight transfers (up to `grace`)."""
        cfg = self._load()
        async with contextlib.AsyncExitStack() as stack:
            store = stack.enter_context(self._open_store())
            coord = await stack.enter_async_context(CoordinatorClient.from_config(cfg))
            # repairs reach relayed peers over hole-punched links too (net/punch.py)
            peers = await stack.enter_async_context(PeerClient(links=Links(coord.observed)))
            key = await self._ticket_key(cfg, coord)
            app = make_app(store, peer_id=cfg.machine_id, ticket_key=key, caps=cfg.supply)
            app[STATE].served_hooks.extend(self.served_hooks)
            if self.relay:
                add_relay(app, RelayState(key=lambda: key, relay_id=cfg.machine_id,
                                          bucket=TokenBucket(self.relay_rate)))
            # short lingering: a refused body is not drained past the caps for long
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.grace,
                                   lingering_time=2.0, keepalive_timeout=HEADER_TIMEOUT)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            tls = await self._listen(runner)
            if tls is not None and not self.advertise:  # behind a NAT, maybe: punch holes
                app[STATE].opener = HoleOpener(coord, self.port, self.tls_pin, runner.server,
                                               tls)
            log.info("serving fragments at %s (peer %s, storage %s)", self.url(),
                     cfg.machine_id, self.storage)
            await self._until(stop, AgentContext(cfg, coord, peers, app[STATE], self.url()))

    @contextlib.contextmanager
    def _open_store(self) -> Iterator[FragmentStore]:
        try:
            store = FragmentStore(self.storage).open()
        except StoreError as exc:
            raise P2pbakError(str(exc)) from None
        try:
            yield store
        finally:
            store.close()

    async def _until(self, stop: asyncio.Event, ctx: AgentContext) -> None:
        workers = list(self.workers)
        if not self.advertise or self.relay:  # find our address (a relay: offer it)
            workers.append(Reacher(self.host, self.port, relay=self.relay,
                                   on_change=self._reach_changed,
                                   recheck=max(5.0, 5 * self.interval),
                                   link_key=seal.load_or_create(self.storage),
                                   port_mapping=self.port_mapping, tls_pin=self.tls_pin))
        jobs = [asyncio.create_task(self._heartbeats(ctx))]
        jobs += [asyncio.create_task(self._supervise(w, ctx)) for w in workers]
        try:
            await stop.wait()
            log.info("stopping: finishing transfers in flight")
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        await self._sign_off(ctx)

    async def _sign_off(self, ctx: AgentContext) -> None:
        """Tell the coordinator this peer goes offline now (after the last heartbeat, so
        none lands after it), so counts drop at once, not after the heartbeat timeout.
        Best effort: a stop must not hang on a coordinator that is away."""
        try:
            await asyncio.wait_for(ctx.coord.sign_off(), SIGN_OFF_TIMEOUT)
            log.info("told the coordinator this peer is going offline")
        except (P2pbakError, TimeoutError) as exc:
            log.warning("could not tell the coordinator this peer is going offline (%s); "
                        "it counts the peer offline after the heartbeat timeout",
                        exc or "no answer")

    async def _supervise(self, worker: Worker, ctx: AgentContext) -> None:
        name = getattr(worker, "__qualname__", repr(worker))
        while True:
            try:
                await worker(ctx)
                return
            except Exception as exc:  # a supervisor: log, keep the agent serving, restart
                log.warning("%s failed (%s: %s); restarting in %.0f s", name,
                            type(exc).__name__, exc, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        if self.reached is not None and not self.advertise:
            return self.reached.url
        if self.advertise:  # given by hand: our pin added when we serve TLS
            return peertls.pinned(self.advertise, self.tls_pin) if self.tls_pin \
                else self.advertise
        if self.tls_pin:
            return peertls.pinned(f"https://{host}:{self.port}", self.tls_pin)
        return f"http://{host}:{self.port}"

    def _reach_changed(self, reached: Reached) -> None:
        if reached != self.reached:
            log.info("reachable: %s", reached.describe())
            self.reached = reached
            self._url_changed.set()

    def _load(self) -> Config:
        cfg = config.load(self.config_path)
        self._cfg, self._mtime = cfg, _mtime(cfg.path)
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

    async def _listen(self, runner: web.AppRunner) -> ssl.SSLContext | None:
        tls = None
        if peertls.wants_tls(self.host):  # beyond loopback, peers speak TLS only
            if self.advertise and not self.advertise.startswith("https://"):
                raise P2pbakError(f"--advertise {self.advertise}: beyond loopback this peer "
                                  "serves TLS only, so advertise an https:// URL")
            tls, self.tls_pin = peertls.load_or_create(self.storage)
        try:
            if tls is not None:  # sharing the port below must not hide another user of it
                with socket.create_server((self.host, self.port), family=socket.AF_INET6
                                          if ":" in self.host else socket.AF_INET):
                    pass
            # reuse_port: hole punching dials out from this very port (peer/holes.py)
            await web.TCPSite(runner, self.host, self.port, ssl_context=tls,
                              reuse_port=tls is not None).start()
        except OSError as exc:
            raise P2pbakError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                              "stop what uses it or choose another --listen") from None
        return tls

    async def _heartbeats(self, ctx: AgentContext) -> None:
        """Announce, then heartbeat every interval; back off while the coordinator is away."""
        announced, delay = False, min(1.0, self.interval)
        state = ctx.state
        if not self.advertise:
            await self._url_changed.wait()  # announce the address found, not a guess
        while True:
            moved = self._url_changed.is_set()
            self._url_changed.clear()
            announced = announced and not self._reload(state) and not moved
            try:
                if not announced:
                    await self._announce(ctx.coord, state)
                    announced = True
                answer = await ctx.coord.heartbeat(self.url(), state.store.stored_bytes,
                                                   state.free_bytes())
            except P2pbakError as exc:
                announced = False  # the coordinator may have lost us: announce again
                self._note(False, str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.interval)
                continue
            self._note(True, "")
            self._check_key(answer)
            await self._run_hooks(ctx, answer)
            delay = min(1.0, self.interval)
            with contextlib.suppress(TimeoutError):  # a new address is announced at once
                await asyncio.wait_for(self._url_changed.wait(), self.interval)

    async def _run_hooks(self, ctx: AgentContext, answer: dict[str, Any]) -> None:
        """Each hook in turn; a failing one is logged when its error changes, not each time."""
        for hook in self.heartbeat_hooks:
            try:
                await hook(ctx, answer)
                self._hook_errors.pop(id(hook), None)
            except Exception as exc:  # one hook's failure must not stop the heartbeats
                if self._hook_errors.get(id(hook)) != str(exc):
                    self._hook_errors[id(hook)] = str(exc)
                    log.warning("after a heartbeat, %s failed: %s",
                                getattr(hook, "__qualname__", repr(hook)), exc)

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

    async def _announce(self, coord: CoordinatorClient, state: PeerState) -> None:
        answer = await coord.announce_peer(self.url(), state.caps)
        if answer.get("rejoined"):  # it had left: nothing is placed here any more
            dropped = await asyncio.to_thread(state.store.clear)
            log.info("re-joined after leaving: a clean start (dropped %d old fragments)",
                     dropped)

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

    def _check_key(self, answer: dict[str, Any]) -> None:
        """Warn once if the coordinator's key is not the pinned one (its tickets will fail)."""
        key = answer.get("ticket_key")
        pinned = self._cfg.ticket_key if self._cfg else ""
        if pinned and key and key != pinned and key != self._key_warned:
            self._key_warned = str(key)
            log.warning("the coordinator now signs with another ticket key than the one "
                        "pinned in %s: tickets it issues are refused; if the change is "
                        "expected, run `p2pbak recover` to pin the new key", self._cfg.path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _cap(value: int | None, rate: bool) -> str:
    if value is None:
        return "unlimited"
    return format_rate(value) if rate else format_size(value)
