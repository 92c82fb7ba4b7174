"""A peer's address answered by an attacker (issue 14, attack 4): every request goes on to the
real peer behind it, so it heartbeats, passes dial-back and stores like an honest peer, but
every fragment it serves comes back as random bytes of the right length."""

from __future__ import annotations

import asyncio
import os
import threading

from aiohttp import ClientSession, web

HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


class RandomBytesFront(threading.Thread):
    """Listens on 127.0.0.1:`port` in front of `upstream` (http://host:port)."""

    def __init__(self, port: int, upstream: str) -> None:
        super().__init__(daemon=True)
        self.port, self.upstream = port, upstream.rstrip("/")
        self.ready, self.lies = threading.Event(), 0
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    def close(self) -> None:
        if self._loop and self._done:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(10)

    async def _serve(self) -> None:
        self._loop, self._done = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        await runner.setup()
        async with ClientSession(auto_decompress=False) as self.session:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.ready.set()
            await self._done.wait()
        await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self.session.request(request.method, self.upstream + str(request.rel_url),
                                        headers=headers, data=await request.read()) as r:
            body = await r.read()
            back = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
        if (request.method == "GET" and request.path.startswith("/v1/fragments/")
                and r.status in (200, 206)):
            body, self.lies = os.urandom(len(body)), self.lies + 1
        return web.Response(status=r.status, body=body, headers=back)
