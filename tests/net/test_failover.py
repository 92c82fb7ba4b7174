"""CoordinatorClient fails over along its URLs: the next one when a coordinator does not
answer (refused, stalled), never on an answer (a 4xx is the coordinators' word), and it
stays with the one that answered."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from p2pbak.errors import Unreachable
from p2pbak.localgrid.grid import free_port
from p2pbak.net.api import CoordinatorClient, CoordinatorError


class Counting:
    """A coordinator stand-in answering /v1/health and /v1/status, counting its requests."""

    def __init__(self, name: str, status: int = 200, stall: float = 0) -> None:
        self.name, self.status, self.stall, self.hits = name, status, stall, 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.stall:
            await asyncio.sleep(self.stall)
        return web.json_response({"name": self.name} if self.status == 200 else
                                 {"error": f"{self.name} refuses"}, status=self.status)


async def with_servers(servers: list[Counting],
                       body: Callable[[list[str]], Awaitable[Any]]) -> Any:
    runners, urls = [], []
    for s in servers:
        app = web.Application()
        app.add_routes([web.get("/v1/health", s.handle), web.get("/v1/status", s.handle)])
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        return await body(urls)
    finally:
        for runner in runners:
            await runner.cleanup()


def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused


def test_refused_url_fails_over_and_the_client_sticks_with_the_answering_one() -> None:
    b, c = Counting("b"), Counting("c")

    async def body(urls: list[str]) -> None:
        async with CoordinatorClient([dead(), *urls], machine_id="m", secret="s") as client:
            assert (await client.health())["name"] == "b"
            assert client.base_url == urls[0]
            for _ in range(3):
                assert (await client.status())["name"] == "b"
        assert (b.hits, c.hits) == (4, 0)  # every request after the first went to b alone

    asyncio.run(with_servers([b, c], body))


def test_a_4xx_answer_is_not_tried_elsewhere() -> None:
    a, b = Counting("a", status=403), Counting("b")

    async def body(urls: list[str]) -> None:
        async with CoordinatorClient(",".join(urls), machine_id="m", secret="s") as client:
            with pytest.raises(CoordinatorError, match="a refuses") as e:
                await client.status()
        assert e.value.status == 403
        assert (a.hits, b.hits) == (1, 0)

    asyncio.run(with_servers([a, b], body))


def test_a_stalled_coordinator_times_out_and_the_next_answers() -> None:
    a, b = Counting("a", stall=30), Counting("b")

    async def body(urls: list[str]) -> None:
        async with CoordinatorClient(urls, timeout=0.3) as client:
            assert (await client.health())["name"] == "b"

    asyncio.run(with_servers([a, b], body))
    assert (a.hits, b.hits) == (1, 1)


def test_wraps_around_to_an_earlier_url_when_the_current_one_dies() -> None:
    a = Counting("a")

    async def body(urls: list[str]) -> None:
        async with CoordinatorClient([urls[0], dead()]) as client:
            client._at = 1  # it had moved on to the second, which is now down
            assert (await client.health())["name"] == "a"
            assert client.base_url == urls[0]

    asyncio.run(with_servers([a], body))
    assert a.hits == 1


def test_all_down_names_every_url() -> None:
    urls = [dead(), dead()]

    async def go() -> None:
        async with CoordinatorClient(urls) as client:
            with pytest.raises(Unreachable) as e:
                await client.health()
        assert all(u in str(e.value) for u in urls)
        assert "2 coordinators" in str(e.value)

    asyncio.run(go())


def test_a_name_with_several_addresses_is_tried_address_by_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A DNS name with an address per coordinator: the first address refuses (nothing
    listens on 127.0.0.2), the connector goes on to the next, which answers."""
    import socket

    real = socket.getaddrinfo
    asked: list[str] = []

    def resolve(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host != "coordinators.test":
            return real(host, port, *args, **kw)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))
                for ip in ("127.0.0.2", "127.0.0.1")]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)  # the OS resolver, not our code
    a = Counting("a")

    async def body(urls: list[str]) -> None:
        port = urls[0].rsplit(":", 1)[1]
        async with CoordinatorClient(f"http://coordinators.test:{port}") as client:
            assert (await client.health())["name"] == "a"

    asyncio.run(with_servers([a], body))
    assert asked and a.hits == 1
