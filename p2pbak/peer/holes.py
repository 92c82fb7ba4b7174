"""The peer's half of hole punching (net/punch.py): answer `POST /v1/punch` with our public
address, then dial the client from our listening port while it dials us; the connection
that results is served by our own HTTPS server as if it had been accepted."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from p2pbak.errors import P2pbakError
from p2pbak.net import punch
from p2pbak.net.api import CoordinatorClient
from p2pbak.net.validate import fail

log = logging.getLogger("p2pbak.peer")


@dataclass
class HoleOpener:
    """`PeerState.opener` for a peer serving TLS on `port`."""

    coord: CoordinatorClient
    port: int
    pin: str  # our certificate's: the client checks it on the punched link
    server: web.Server  # our fragment server's protocol factory
    tls: ssl.SSLContext
    opened: int = 0  # links punched since start
    _dials: set[asyncio.Task[None]] = field(default_factory=set)

    async def __call__(self, ip: str, port: int) -> dict[str, object]:
        try:
            mine, public = await self.coord.observed(self.port)
        except P2pbakError as exc:
            fail(503, f"cannot learn this peer's public address now: {exc}")
        dial = asyncio.create_task(self._dial(ip, port))
        self._dials.add(dial)
        dial.add_done_callback(self._dials.discard)
        return {"ip": mine, "port": public, "pin": self.pin}

    async def _dial(self, ip: str, port: int) -> None:
        sock = await punch.dial_from(self.port, ip, port)
        if sock is None:  # no answer (a symmetric NAT), or its SYN came to our listener
            return
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(self.server, sock, ssl=self.tls)
        self.opened += 1
        log.info("hole punched: a direct link with %s:%d", ip, port)
        try:  # for `status` only: a lost report costs nothing
            await self.coord.punched(self.opened)
        except P2pbakError as exc:
            log.info("could not tell the coordinator of the punched link: %s", exc)
