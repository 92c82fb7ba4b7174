"""The local settings page (§3.1, Fig. 1): an aiohttp app on 127.0.0.1 behind a URL token.

Every slider move asks GET /api/balance, priced here from the snapshot the coordinator last
published (market.settings): no coordinator round trip per move. The snapshot is fetched
when the page opens, refreshed after SNAPSHOT_TTL and after Apply. Apply saves the caps as
`supply set` does (config.parse_caps, config.save) and sends them to the coordinator.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from p2pbak.config import atomic_write, load, parse_caps, save
from p2pbak.errors import P2pbakError
from p2pbak.market.settings import Snapshot, balance, prior_snapshot
from p2pbak.net.api import CoordinatorClient
from p2pbak.ui import sliders
from p2pbak.ui.state import account_details, machine_state

HOST = "127.0.0.1"  # the page edits this machine's caps: never reachable from elsewhere
SNAPSHOT_TTL = 600.0  # s; prices move once a day, a page left open still catches the move
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


@dataclass
class Page:
    """What the app serves from: the config file, the token and the cached snapshot."""

    config: Path | None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    snapshot: Snapshot | None = None
    fetched: float = 0.0
    note: str = ""

    def load(self) -> Any:
        return load(self.config)

    async def refresh(self, force: bool = False) -> Snapshot:
        if self.snapshot is not None and not force and \
                time.monotonic() - self.fetched < SNAPSHOT_TTL:
            return self.snapshot

        cfg = self.load()
        try:
            async with CoordinatorClient.from_config(cfg) as coord:
                self.snapshot = Snapshot.from_quote(await coord.supply_quote(cfg.supply))
            self.note = ""
        except P2pbakError as exc:
            if self.snapshot is None:
                self.snapshot = prior_snapshot()
            self.note = (f"the coordinator could not be reached ({exc}): the figures use the "
                         "last prices known")
        self.fetched = time.monotonic()
        return self.snapshot


PAGE_KEY = web.AppKey("page", Page)


def _token_ok(request: web.Request, page: Page) -> bool:
    given = request.query.get("token") or request.headers.get("X-P2pbak-Token") or \
        request.cookies.get(_cookie(request)) or ""
    return hmac.compare_digest(given.encode(), page.token.encode())


def _cookie(request: web.Request) -> str:
    # cookies ignore ports: one name per port, so two pages on one host do not clash
    return f"p2pbak_ui_{request.url.port or 0}"


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    page = request.app[PAGE_KEY]
    if not _token_ok(request, page):
        return web.Response(status=403, text="forbidden: open the URL `p2pbak ui` printed "
                            "(it carries ?token=...)\n")
    try:
        return await handler(request)
    except P2pbakError as exc:
        return web.json_response({"error": str(exc)}, status=400)


def _asset(name: str) -> str:
    return resources.files("p2pbak.ui").joinpath("static", name).read_text(encoding="utf-8")


async def index(request: web.Request) -> web.Response:
    resp = web.Response(text=_asset("index.html"), content_type="text/html")
    token = request.query.get("token")
    if token:
        resp.set_cookie(_cookie(request), token, httponly=True, samesite="Strict", path="/")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of referers
    return resp


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(text=f"no such file {name!r}\n")
    return web.Response(text=_asset(name), content_type=STATIC[name])


def page_caps(supply: Any) -> dict[str, int]:
    """The caps in the page's terms: its last stop, 0, is no cap; it has no stop at zero,
    so a space of 0 (lend nothing) sits at 1 B, which Apply keeps as good as nothing."""
    return {k: 0 if v is None else max(v, 1) for k, v in asdict(supply).items()}


async def settings(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    snap = await page.refresh()
    cfg = page.load()
    caps = page_caps(cfg.supply)
    return web.json_response({
        "caps": caps, "sliders": sliders.tables(snap.disk_bytes, caps),
        "balance": balance(snap, **caps).to_dict(), "availability": snap.availability,
        "note": page.note})


def _int_arg(request: web.Request, name: str) -> int:
    text = request.query.get(name, "0")
    if not text.isdigit() or len(text) > 18:
        raise P2pbakError(f"{name} must be a whole number of bytes (or bytes/s), got {text!r}")
    return int(text)


async def balance_route(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    snap = await page.refresh()
    caps = {n: _int_arg(request, n) for n in ("space", "upload", "download")}
    return web.json_response(balance(snap, **caps).to_dict())


async def apply(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    try:
        body = await request.json()
    except ValueError:
        raise P2pbakError("the body must be JSON: {\"space\", \"upload\", \"download\"}") from None
    if not isinstance(body, dict):
        raise P2pbakError("the body must be a JSON object")
    texts = {n: None if body.get(n) is None else "unlimited" if body[n] in (0, "0")
             else str(body[n]) for n in ("space", "upload", "download")}  # 0: the no-cap stop
    cfg = page.load()
    cfg.supply = parse_caps(cfg.supply, **texts)  # the same validation as `supply set`
    save(cfg)
    try:
        async with CoordinatorClient.from_config(cfg) as coord:
            await coord.set_supply(cfg.supply)
        when = ("Saved. The coordinator counts the new caps from now on; this computer's "
                "peer agent applies them at its next heartbeat (within a minute).")
        sent = True
    except P2pbakError as exc:
        when = (f"Saved on this computer, but the coordinator could not be reached ({exc}); "
                "the peer agent sends the caps when it next reaches it.")
        sent = False
    await page.refresh(force=True)
    return web.json_response({"caps": page_caps(cfg.supply), "sent": sent, "message": when})


async def state(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    return web.json_response(await machine_state(page.load()))


async def details(request: web.Request) -> web.Response:
    page = request.app[PAGE_KEY]
    return web.json_response(await account_details(page.load()))


def make_app(page: Page) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[PAGE_KEY] = page
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/settings", settings)
    app.router.add_get("/api/balance", balance_route)
    app.router.add_post("/api/apply", apply)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/details", details)
    return app


async def start(page: Page, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve on 127.0.0.1:port (0: a free one); the runner and the URL with its token."""
    runner = web.AppRunner(make_app(page), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise P2pbakError(f"cannot serve the settings page on {HOST}:{port} ({exc}): "
                          "choose another --port") from None
    bound = runner.addresses[0][1]
    return runner, f"http://{HOST}:{bound}/?token={page.token}"


# -- the page served by `peer run`, found by `status` -------------------------------------

URL_FILE = "settings_url"  # beside the config, 0600: the URL carries the token


def publish(config_file: Path, url: str) -> Path:
    path = config_file.parent / URL_FILE
    atomic_write(path, url.encode() + b"\n", mode=0o600)
    return path


def published(config_file: Path) -> str | None:
    """The URL `peer run` serves its settings page at, if it runs (None: not known)."""
    try:
        return (config_file.parent / URL_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def withdraw(config_file: Path, url: str) -> None:
    if published(config_file) == url:  # not another agent's page
        (config_file.parent / URL_FILE).unlink(missing_ok=True)
