"""Hole punching: a direct TCP link to a relayed peer, by simultaneous open (like libp2p's
DCUtR, over TCP).

Both ends sit behind NAT routers that accept no incoming connection. Each learns the public
address its router gives one local port (`GET /v1/observed` at the coordinator, sent from
that port), the client tells the peer its own through the relay (`POST /v1/punch`, sealed,
with a ticket for that peer) and gets the peer's back; then both connect to each other from
those ports at once. Each outgoing SYN opens its own router for the answer, so the two SYNs
cross and one TCP connection results, TLS inside with the peer's certificate pinned. A
router that gives every destination another port (symmetric NAT) cannot be punched: the
client keeps the relay.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from p2pbak.errors import P2pbakError
from p2pbak.net import urls
from p2pbak.net.tickets import HEADER as TICKET_HEADER

PUNCH_PATH = "/v1/punch"
CONNECT = 3.0  # seconds either side keeps trying (a SYN dropped is sent again after 1 s)
RETRY_AFTER = 60.0  # seconds before punching again to a peer where it failed
Observe = Callable[[int], Awaitable[tuple[str, int]]]  # local port → its public (ip, port)
# (method, url, path, headers, body, max_size) → (status, body), sealed through the relay
Sealed = Callable[[str, str, str, dict[str, str], bytes | None, int],
                  Awaitable[tuple[int, bytes]]]


def reusable(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
             port: int = 0) -> socket.socket:
    """A TCP socket bound to `port` that shares it with a listener and other dials."""
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    return s


def bound_connector(port: int, limit: int = 0) -> aiohttp.TCPConnector:
    """A connector whose connections all leave from local `port`. They end with a reset,
    not in TIME_WAIT: that would keep the same (port, server) pair from being connected
    again for a minute (the peer asks the coordinator from its one port at every punch)."""
    def make(info: Any) -> socket.socket:
        s = reusable(info[0], info[1], port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return s
    return aiohttp.TCPConnector(socket_factory=make, limit=limit, force_close=False)


def free_port() -> int:
    """A port nothing uses now (bound without SO_REUSEPORT: no one else's shared one)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def dial_from(port: int, ip: str, to: int, timeout: float = CONNECT,
                    ) -> socket.socket | None:
    """Connect from local `port` to (ip, to), trying until `timeout`; the connected socket,
    or None (also when the other side's SYN reached our listener first: that connection
    is the link, and ours cannot be made beside it)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        s = reusable(port=port)
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, (ip, to)), min(1.0, left))
            return s
        except TimeoutError:
            s.close()
        except OSError as exc:
            s.close()
            if exc.errno == errno.EADDRNOTAVAIL:  # this pair is connected already
                return None
            await asyncio.sleep(0.1)
    return None


@dataclass
class Link:
    """A punched connection to one peer: its session (one kept-alive connection from our
    punched port) and the pinned TLS check of the peer's certificate."""

    session: aiohttp.ClientSession
    base: str
    check: aiohttp.Fingerprint | bool


@dataclass
class Links:
    """The client's punched links, one per relayed peer URL, made on first use."""

    observe: Observe
    punched: int = 0  # links made
    failed: int = 0  # punches tried that did not connect (symmetric NAT, a firewall)
    _links: dict[str, Link] = field(default_factory=dict)
    _pending: dict[str, asyncio.Future[Link | None]] = field(default_factory=dict)
    _gave_up: dict[str, float] = field(default_factory=dict)

    async def get(self, url: str, ticket: str, sealed: Sealed) -> Link | None:
        """The link to the relayed peer at `url`, punched now if need be (`ticket`: one for
        that peer, which it checks before it dials); None: use the relay."""
        if url in self._links:
            return self._links[url]
        if time.monotonic() < self._gave_up.get(url, 0.0):
            return None
        pending = self._pending.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._punch(url, ticket, sealed))
            self._pending[url] = pending
            pending.add_done_callback(lambda _: self._pending.pop(url, None))
        link = await asyncio.shield(pending)
        if link is None:
            self._gave_up[url] = time.monotonic() + RETRY_AFTER
        return link

    async def drop(self, url: str) -> None:
        """The link broke: the relay until the next punch."""
        link = self._links.pop(url, None)
        if link is not None:
            await link.session.close()

    async def close(self) -> None:
        for url in list(self._links):
            await self.drop(url)

    async def _punch(self, url: str, ticket: str, sealed: Sealed) -> Link | None:
        port = free_port()
        try:
            ip, public = await self.observe(port)
            status, raw = await sealed("POST", url, PUNCH_PATH, {
                TICKET_HEADER: ticket, "Content-Type": "application/json"},
                json.dumps({"ip": ip, "port": public}).encode(), 1 << 16)
            answer = json.loads(raw) if status == 200 else {}
            peer_ip, peer_port = str(ipaddress.IPv4Address(answer["ip"])), int(answer["port"])
            # the pin the peer sent, checked as any pinned peer URL's (net/urls)
            base, check = urls.target(f"https://{answer['pin']}@{peer_ip}:{peer_port}")
        except (P2pbakError, KeyError, TypeError, ValueError):  # costs only the direct path
            return self._fail()
        if peer_ip == ip:  # one router for both: few loop back to themselves (hairpin)
            return None
        session = aiohttp.ClientSession(
            connector=bound_connector(port, limit=1),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT, sock_read=60))
        link = Link(session, base, check)
        try:
            async with session.get(link.base + "/v1/health", ssl=link.check) as resp:
                await resp.read()
                if resp.status != 200:
                    raise aiohttp.ClientError(f"HTTP {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError):
            await session.close()
            return self._fail()
        self._links[url] = link
        self.punched += 1
        return link

    def _fail(self) -> None:
        self.failed += 1
