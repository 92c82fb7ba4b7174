"""How other machines reach this peer, found by the peer itself (a peer-agent worker).

The agent names the addresses it listens on (every interface's for 0.0.0.0) and the
coordinator dials them back, plus the address it sees us come from (POST /v1/reach). If one
answers, that URL is ours ("public"; "port-mapped" when it is the port our router forwards
to us over UPnP or NAT-PMP, peer/portmap.py). If none does we are behind a NAT or firewall: the
coordinator assigns a relay and we keep one outbound WebSocket to it; our URL is then the
relay's `/v1/relay/{peer_id}` and every request for us comes down that link ("relayed").
When the link drops we ask again, avoiding that relay, and re-announce the new URL.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pbak.errors import P2pbakError
from p2pbak.net import peertls, seal, tickets, urls
from p2pbak.net.api import MAX_FRAGMENT, CoordinatorError
from p2pbak.net.relay import COORDINATOR_ID, relay_url
from p2pbak.net.relay_mux import CHUNK, HEAD, Mux, Stream, StreamReset
from p2pbak.peer.portmap import PortMapper

if TYPE_CHECKING:
    from p2pbak.peer.agent import AgentContext

log = logging.getLogger("p2pbak.peer")

RECHECK = 300.0  # seconds between dial-back checks while reachable (addresses change)
RETRY = 2.0  # seconds before asking again after a failure
ANY = ("0.0.0.0", "::", "")
# what a sealed request may ask of our server: transfers, health, storage proofs (POST)
SEALED_METHODS = ("GET", "PUT", "HEAD", "DELETE", "POST")


@dataclass(frozen=True)
class Reached:
    how: str  # public or port-mapped (dialled back), relayed, unreachable (no relay)
    url: str
    via: str = ""  # the relay's peer id, or "coordinator"; port-mapped: UPnP or NAT-PMP
    observed: str = ""  # the address the coordinator sees us come from

    def describe(self) -> str:
        if self.how == "relayed":
            return f"relayed via {self.via} at {self.url}"
        if self.via:
            return f"{self.how} ({self.via}) at {self.url}"
        return f"{self.how} at {self.url}"


def local_addresses() -> list[str]:
    """Every interface's IPv4 address (SIOCGIFADDR), loopback last."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            req = array.array("B", struct.pack("256s", name.encode()[:15]))
            try:
                fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(req.tobytes()[20:24]))
    return sorted(set(found), key=lambda a: (a.startswith("127."), a))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class Reacher:
    """The worker that keeps this peer reachable; `on_change` gets each new way in."""

    def __init__(self, host: str, port: int, *, relay: bool,
                 link_key: X25519PrivateKey, on_change: Callable[[Reached], None],
                 recheck: float = 60.0, port_mapping: bool = True, tls_pin: str = "",
                 ) -> None:
        self.host, self.port, self.relay = host, port, relay
        self.tls_pin = tls_pin  # our certificate's pin when we serve TLS (net/peertls.py)
        # a router maps ports only for addresses behind it: never on loopback
        self.mapper = PortMapper(port) if port_mapping and not _loopback(host) else None
        # through a relay, only requests sealed for this key are answered (net/seal.py)
        self.link_key = link_key
        self.on_change = on_change
        self.recheck = recheck  # seconds on the coordinator's relay before asking for a peer
        self._next: dict[str, Any] | None = None  # an answer already in hand
        # our own server, for the requests a relay brings (TLS: our own self-signed cert)
        self.scheme = "https" if tls_pin else "http"
        self.local = _host_url("127.0.0.1" if host in ANY else host, port, self.scheme)
        self._session: aiohttp.ClientSession | None = None

    def _url(self, host: str, port: int) -> str:
        """How others dial `host:port` here: over TLS with our pin, when we serve TLS."""
        url = _host_url(host, port, self.scheme)
        return peertls.pinned(url, self.tls_pin) if self.tls_pin else url

    def offered(self) -> list[str]:
        return local_addresses() if self.host in ANY else [self.host]

    async def __call__(self, ctx: AgentContext) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                await self._reach(ctx)
            finally:
                if self.mapper is not None:
                    await self.mapper.remove()

    async def _reach(self, ctx: AgentContext) -> None:
        avoid: list[str] = []
        while True:
            answer, self._next = self._next or await self._ask(ctx, avoid), None
            if answer.get("reachable"):
                avoid = []
                await self._public(answer)
                continue
            relay = answer.get("relay")
            if not isinstance(relay, dict):
                self.on_change(Reached("unreachable", self._url(self.host, self.port),
                                       observed=str(answer.get("observed", ""))))
                log.warning("no address of this peer answers from outside and no relay "
                            "is offered: ask the coordinator's operator for `serve "
                            "--relay`, or forward port %d", self.port)
                await asyncio.sleep(RETRY * 5)
                continue
            await self._tunnel(ctx, relay)
            avoid = [str(relay.get("url")) or COORDINATOR_ID]
            await asyncio.sleep(RETRY / 4)

    async def _ask(self, ctx: AgentContext, avoid: list[str]) -> dict[str, Any]:
        """POST /v1/reach, retried while the coordinator is away."""
        mapping = await self.mapper.ensure() if self.mapper is not None else None
        body = {"port": self.port, "addresses": self.offered(), "relay": self.relay,
                "avoid": avoid, "mapped": [mapping.address] if mapping else [],
                "mapped_by": mapping.method if mapping else "", "scheme": self.scheme}
        if self.tls_pin:
            body["pin"] = self.tls_pin
        while True:
            try:
                return await ctx.coord.call("POST", "/v1/reach", body)
            except CoordinatorError as exc:
                if exc.status == 404:  # a coordinator without dial-back: trust the listen URL
                    return {"reachable": [self._url(self.host, self.port)]}
                log.warning("reachability check refused: %s", exc)
            except P2pbakError as exc:
                log.debug("reachability check deferred: %s", exc)
            await asyncio.sleep(RETRY)

    async def _public(self, answer: dict[str, Any]) -> None:
        reachable = [str(u) for u in answer["reachable"]]
        mine = self._url(self.host, self.port)
        url = mine if mine in reachable else reachable[0]
        mapping = self.mapper.mapping if self.mapper is not None else None
        mapped = mapping and url == self._url(mapping.external_ip, mapping.external_port)
        self.on_change(Reached("port-mapped" if mapped else "public", url,
                               via=mapping.method if mapping and mapped else "",
                               observed=str(answer.get("observed", ""))))
        await asyncio.sleep(RECHECK)

    async def _tunnel(self, ctx: AgentContext, relay: dict[str, Any]) -> None:
        """Hold the relay link until it drops; serve each stream it brings."""
        assert self._session is not None
        base = str(relay.get("url") or ctx.cfg.coordinator)
        url = relay_url(base, ctx.cfg.machine_id)
        via = str(relay.get("relay_id", "?"))
        pinned = url + seal.KEY_MARK + seal.public_hex(self.link_key)
        try:
            target, check = urls.target(url)  # a peer relay's certificate is pinned
            async with self._session.ws_connect(
                    target + "/connect", headers={tickets.HEADER: str(relay.get("ticket"))},
                    heartbeat=15, max_msg_size=CHUNK + 1024, ssl=check) as ws:
                mux = Mux(ws, on_open=self._serve, first_id=2)
                self.on_change(Reached("relayed", pinned, via=via))
                await self._hold(ctx, mux, via)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("cannot keep a link to relay %s at %s (%s): asking for another",
                        via, base, exc)
            return
        if self._next is None:
            log.warning("the link to relay %s at %s closed: asking for another", via, base)

    async def _hold(self, ctx: AgentContext, mux: Mux, via: str) -> None:
        """Run the link; on the relay of last resort, move to a peer relay once one offers
        (the coordinator's bandwidth is the grid's scarcest)."""
        run = asyncio.create_task(mux.run())
        try:
            while not run.done():
                wait = self.recheck if via == COORDINATOR_ID else None
                await asyncio.wait({run}, timeout=wait)
                if run.done():
                    break
                answer = await self._ask(ctx, [COORDINATOR_ID])
                if answer.get("reachable") or isinstance(answer.get("relay"), dict):
                    self._next = answer
                    log.info("moving off the coordinator's relay")
                    return
        finally:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run

    async def _serve(self, stream: Stream) -> None:
        """One relayed request: open it, replay it on our own server, seal the answer."""
        try:
            head = await stream.head
            await self._serve_sealed(stream, str(head["method"]), str(head["path"]))
        except (aiohttp.ClientError, StreamReset, OSError, TimeoutError, KeyError,
                TypeError, ValueError) as exc:
            with contextlib.suppress(Exception):
                await stream.reset(str(exc) or type(exc).__name__)
        finally:
            stream.close()

    async def _serve_sealed(self, stream: Stream, method: str, path: str) -> None:
        """Anything but a request sealed for our link key is refused."""
        assert self._session is not None
        if (method, path) != ("POST", seal.SEALED_PATH):
            return await _answer(stream, 403, b'{"error": "this peer answers sealed '
                                 b'requests only (POST /sealed)"}')
        blob = bytearray()
        async for piece in stream.body():
            blob += piece
            if len(blob) > MAX_FRAGMENT + seal.OVERHEAD:
                return await _answer(stream, 413, b'{"error": "sealed request too large"}')
        try:
            opened = seal.open_request(self.link_key, bytes(blob))
        except seal.SealError as exc:
            return await _answer(stream, 400, json.dumps({"error": str(exc)}).encode())
        inner = opened.head
        method, path = str(inner.get("method", "")), str(inner.get("path", ""))
        headers = {str(k): str(v) for k, v in dict(inner.get("headers") or {}).items()}
        if not path.startswith("/v1/") or method not in SEALED_METHODS:
            return await _answer(stream, 400, b'{"error": "bad sealed request"}')
        data = opened.body if method in ("PUT", "POST") else None
        async with self._session.request(method, self.local + path, headers=headers,
                                         data=data, allow_redirects=False,
                                         ssl=False) as resp:
            body = await resp.read()
            out = {h: resp.headers[h] for h in ("Content-Type",) if h in resp.headers}
        await _answer(stream, 200, seal.seal_response(
            opened.response_key, {"status": resp.status, "headers": out}, body),
            "application/octet-stream")


async def _answer(stream: Stream, status: int, body: bytes,
                  kind: str = "application/json") -> None:
    await stream.send_head(HEAD, {"status": status, "headers": {
        "Content-Type": kind, "Content-Length": str(len(body))}})
    await stream.write(body)
    await stream.end()
