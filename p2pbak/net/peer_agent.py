"""The peer agent process (`p2pbak peer run`): serve fragments, announce, heartbeat, stop.

The coordinator may come and go; the agent keeps serving fragments while it is away,
retries with backoff, and logs one line per change of state rather than one per failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2pbak import config
from p2pbak.config import Config, format_rate, format_size
from p2pbak.errors import P2pbakError
from p2pbak.net import tickets
from p2pbak.net.client import CoordinatorClient
from p2pbak.net.peer import STATE, PeerState, make_app
from p2pbak.store.fragments import FragmentStore, StoreError

log = logging.getLogger("p2pbak.peer")


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
