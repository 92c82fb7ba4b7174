"""Run the coordinator app until SIGTERM/SIGINT: listen, serve, then shut down cleanly
(stop accepting, let in-flight requests finish, stop jobs, close the database)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from p2pbak.coordinator.http.app import make_app
from p2pbak.coordinator.http.common import COORD
from p2pbak.coordinator.model import MarketSettings, RepairSettings
from p2pbak.errors import P2pbakError
from p2pbak.net.relay import COORDINATOR_ID, RelayState, add_relay, close_tunnels
from p2pbak.net.serving import wait_for_signal
from p2pbak.net.validate import HEADER_TIMEOUT

SHUTDOWN_GRACE = 30.0  # seconds in-flight requests get to finish

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServeOptions:
    db: Path | str  # an SQLite file or a postgresql:// URL
    host: str
    port: int
    online_window: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    market: MarketSettings | None = None
    repair: RepairSettings | None = None
    relay: bool = False  # relay of last resort for peers behind NAT (net/relay.py)


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise P2pbakError("give both --tls-cert and --tls-key, or neither")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise P2pbakError(f"cannot load TLS certificate {cert} / key {key}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return ctx


def prepare_db_path(path: Path | str) -> Path | str:
    """Create the database's folder if needed; a clear error when that is impossible."""
    if not isinstance(path, Path):
        return path  # a postgresql:// URL: nothing on this machine to prepare
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise P2pbakError(f"cannot create the folder for database {path}: "
                          f"{exc.strerror or exc}: choose another --db") from None
    if path.is_dir():
        raise P2pbakError(f"--db {path} is a folder: give a file path")
    return path


class InFlight:
    """Counts requests being handled, so shutdown can wait for them. (aiohttp's own
    graceful shutdown stops reading request bodies, which would strand an upload.)"""

    def __init__(self) -> None:
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.active += 1
        self.idle.clear()
        try:
            return await handler(request)
        finally:
            self.active -= 1
            if self.active == 0:
                self.idle.set()

    async def drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)


async def serve(opts: ServeOptions, on_start: Callable[[str], None],
                on_stop: Callable[[], None]) -> None:
    """Serve until SIGTERM or SIGINT. `on_start` gets the URL actually listened on."""
    ctx = tls_context(opts.tls_cert, opts.tls_key)
    app = make_app(prepare_db_path(opts.db), opts.online_window, market=opts.market,
                   repair=opts.repair)
    if opts.relay:
        add_relay(app, RelayState(key=lambda: app[COORD].signing_key.public_key(),
                                  relay_id=COORDINATOR_ID))
    inflight = InFlight()
    app.middlewares.insert(0, inflight.middleware)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE,
                           keepalive_timeout=HEADER_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, opts.host, opts.port, ssl_context=ctx)
        try:
            await site.start()
        except OSError as exc:
            raise P2pbakError(f"cannot listen on {opts.host}:{opts.port}: "
                              f"{exc.strerror or exc}: choose another --listen") from None
        on_start(_url(runner, ctx is not None))
        await wait_for_signal()
        await site.stop()  # no new connections; requests under way run to the end
        await close_tunnels(app)  # relay links are not requests that end by themselves
        await inflight.drain(SHUTDOWN_GRACE)
    finally:
        await runner.cleanup()
    on_stop()


def _url(runner: web.AppRunner, tls: bool) -> str:
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"

