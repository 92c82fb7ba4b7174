"""CoordinatorClient error mapping and wire format against a small scripted HTTP server."""

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from p2pbak.config import Supply
from p2pbak.errors import ExitCode, P2pbakError, Unreachable
from p2pbak.localgrid.grid import free_port
from p2pbak.net.api import CoordinatorClient, CoordinatorError, PeerClient, PeerError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(routes: list[web.RouteDef], body: Callable[[str], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await body(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def answer(status: int, payload: Any = None, text: str | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(status=status, text=text)
        return web.json_response(payload, status=status)
    return handler


@pytest.mark.parametrize(("status", "payload", "kind", "needle"), [
    (400, {"error": "size must be an integer"}, CoordinatorError, "size must be an integer"),
    (404, {"error": "no such snapshot"}, CoordinatorError, "no such snapshot"),
    (401, {"error": "bad token"}, CoordinatorError, "p2pbak recover"),
    (500, {"error": "database is locked"}, CoordinatorError, "coordinator failed"),
    (502, None, CoordinatorError, "coordinator failed: HTTP 502"),
])
def test_error_statuses(status: int, payload: Any, kind: type, needle: str) -> None:
    async def body(url: str) -> None:
        async with CoordinatorClient(url, machine_id="m", secret="s") as c:
            with pytest.raises(kind) as e:
                await c.status()
            assert needle in str(e.value)
            assert e.value.status == status

    asyncio.run(serve([web.get("/v1/status", answer(status, payload))], body))


def test_unreachable_coordinator() -> None:
    async def go() -> None:
        url = f"http://127.0.0.1:{free_port()}"
        async with CoordinatorClient(url) as c:
            with pytest.raises(Unreachable) as e:
                await c.health()
        assert url in str(e.value) and "p2pbak serve" in str(e.value)
        assert e.value.exit_code == ExitCode.UNREACHABLE

    asyncio.run(go())


def test_non_json_answer_is_clear() -> None:
    async def body(url: str) -> None:
        async with CoordinatorClient(url) as c:
            with pytest.raises(P2pbakError, match="non-JSON"):
                await c.health()

    asyncio.run(serve([web.get("/v1/health", answer(200, text="<html>"))], body))


def test_auth_header_blobs_and_caps_on_the_wire() -> None:
    seen: list[tuple[str, str, Any]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        data = await request.json() if request.can_read_body else None
        seen.append((request.path, request.headers.get("Authorization", ""), data))
        if request.path == "/v1/peer":
            return web.json_response({"peer_id": "m1"})
        if request.method == "GET":
            return web.json_response({"id": "ab", "blob": base64.b64encode(b"\0sealed").decode()})
        return web.Response(status=201)

    async def body(url: str) -> None:
        async with CoordinatorClient(url, machine_id="m1", secret="tok") as c:
            assert (await c.announce_peer("http://p", Supply(5, 6, 7)))["peer_id"] == "m1"
            await c.put_snapshot("ab", b"\xffsecret")
            assert await c.get_snapshot("ab") == b"\0sealed"

    routes = [web.post("/v1/peer", record), web.put("/v1/snapshots/{id}", record),
              web.get("/v1/snapshots/{id}", record)]
    asyncio.run(serve(routes, body))
    assert seen[0] == ("/v1/peer", "Bearer m1.tok",
                       {"url": "http://p", "space": 5, "upload": 6, "download": 7})
    assert seen[1][2] == {"blob": base64.b64encode(b"\xffsecret").decode()}


def test_malformed_blob_is_refused() -> None:
    async def body(url: str) -> None:
        async with CoordinatorClient(url) as c:
            with pytest.raises(P2pbakError, match="malformed"):
                await c.get_keyfile()

    asyncio.run(serve([web.get("/v1/keyfile", answer(200, {"keyfile": "!!not b64"}))], body))


def test_unreachable_peer_is_peer_error() -> None:
    async def go() -> None:
        async with PeerClient() as p:
            with pytest.raises(PeerError) as e:
                await p.get_fragment(f"http://127.0.0.1:{free_port()}", "a" * 64, "t")
        assert e.value.status == 0 and e.value.exit_code == ExitCode.UNREACHABLE

    asyncio.run(go())


def test_stalled_coordinator_times_out_as_unreachable() -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response({})

    async def body(url: str) -> None:
        async with CoordinatorClient(url, timeout=0.3) as c:
            with pytest.raises(Unreachable, match=r"no answer within 0\.3 s"):
                await c.health()

    asyncio.run(serve([web.get("/v1/health", stall)], body))


@pytest.mark.parametrize("url", ["127.0.0.1:8420", "ftp://x", ""])
def test_coordinator_url_needs_a_scheme(url: str) -> None:
    with pytest.raises(P2pbakError, match="http:// or https://"):
        CoordinatorClient(url)
