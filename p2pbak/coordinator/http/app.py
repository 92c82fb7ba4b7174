"""The coordinator's aiohttp application: every `/v1` route of docs/api.md (Coordinator).

Routes live in coordinator_{identity,peers,packs,blobs}.py; this module assembles them,
opens the database with the app and closes it after the last request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from p2pbak import __version__
from p2pbak.coordinator.http import blobs as coordinator_blobs
from p2pbak.coordinator.http import garbage as coordinator_garbage
from p2pbak.coordinator.http import identity as coordinator_identity
from p2pbak.coordinator.http import machines as coordinator_machines
from p2pbak.coordinator.http import market as coordinator_market
from p2pbak.coordinator.http import packs as coordinator_packs
from p2pbak.coordinator.http import peers as coordinator_peers
from p2pbak.coordinator.http import reach, suspects
from p2pbak.coordinator.http import tasks as coordinator_tasks
from p2pbak.coordinator.http.common import COORD, coordinator
from p2pbak.coordinator.model import MarketSettings, RepairSettings
from p2pbak.coordinator.service import DEFAULT_ONLINE_WINDOW, Coordinator
from p2pbak.net.validate import BLOB_BODY, error_middleware

routes = web.RouteTableDef()


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "version": __version__,
                              "ticket_key": coordinator(request).ticket_key})


def make_app(db_path: Path, online_window: int = DEFAULT_ONLINE_WINDOW,
             run_jobs: bool = True, market: MarketSettings | None = None,
             repair: RepairSettings | None = None) -> web.Application:
    """The coordinator app; its database opens on startup and closes on cleanup."""
    app = web.Application(middlewares=[error_middleware], client_max_size=BLOB_BODY)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        coord = await Coordinator.start(db_path, online_window, run_jobs, market, repair)
        app[COORD] = coord
        yield
        await coord.stop()

    app.cleanup_ctx.append(lifecycle)
    for module_routes in (routes, coordinator_identity.routes, coordinator_peers.routes,
                          coordinator_packs.routes, coordinator_blobs.routes):
        app.add_routes(module_routes)
    app.add_routes(coordinator_market.routes)
    app.add_routes(coordinator_tasks.routes)
    app.add_routes(coordinator_garbage.routes)
    app.add_routes(coordinator_machines.routes)
    reach.add_reach(app)  # dial-back and relay assignment for peers
    app.add_routes(suspects.routes)
    return app
