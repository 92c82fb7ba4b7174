"""Port mapping on the home router, as Syncthing does: UPnP IGD through miniupnpc, else
NAT-PMP (RFC 6886, which PCP routers also answer) through py-natpmp.

A peer behind a NAT router that maps ports asks it to forward a TCP port of its public
address to this peer's listening port, for a lease it renews while it runs and removes on
exit. The mapped address is then offered to the coordinator, which dials it back like any
other (peer/reach.py): if it answers, the peer is "port-mapped" and needs no relay.
Both libraries block: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import miniupnpc
from natpmp import NATPMP

log = logging.getLogger("p2pbak.peer")

LEASE = 3600  # seconds a mapping lives unless renewed (renewed at every reachability check)
DISCOVER_MS = 1000  # how long to wait for routers to answer the SSDP search
NATPMP_TRIES = 3  # requests to the gateway before NAT-PMP counts as absent (0.25+0.5+1 s)
TRIES = 4  # other external ports tried when ours is taken (another peer in the same home)
DESCRIPTION = "p2pbak peer"
METHODS = ("UPnP", "NAT-PMP")  # in the order tried


@dataclass(frozen=True)
class Mapping:
    external_ip: str
    external_port: int
    internal_port: int
    method: str = "UPnP"  # which protocol made it (METHODS)

    @property
    def address(self) -> str:
        return f"{self.external_ip}:{self.external_port}"


class Router(Protocol):
    """One way to ask the router for a mapping (blocking calls)."""

    method: str

    def map(self, external: int, internal: int) -> Mapping | None:
        """Our mapping of `external` (new or renewed); None when someone else holds it."""

    def unmap(self, mapping: Mapping) -> None: ...


class PortMapper:
    """One mapping of this peer's port on the router, if the router maps ports."""

    def __init__(self, port: int, methods: tuple[str, ...] = METHODS) -> None:
        self.port = port
        self.methods = methods
        self.mapping: Mapping | None = None
        self._router: Router | None = None

    async def ensure(self) -> Mapping | None:
        """Map (or renew) our port; None when no router maps ports for us."""
        try:
            self.mapping = await asyncio.to_thread(self._ensure)
        except Exception as exc:  # both libraries raise bare or their own errors alike
            log.info("no port mapping: %s", exc)
            self.mapping = None
        return self.mapping

    async def remove(self) -> None:
        mapping, self.mapping = self.mapping, None
        if mapping is not None and self._router is not None:
            try:
                await asyncio.to_thread(self._router.unmap, mapping)
                log.info("removed the %s port mapping %s", mapping.method, mapping.address)
            except Exception as exc:  # the router may be gone: the lease ends by itself
                log.info("could not remove the port mapping %s: %s", mapping.address, exc)

    def _ensure(self) -> Mapping | None:
        router = self._router or self._discover()
        if router is None:
            return None
        ports = [self.mapping.external_port] if self.mapping else []
        ports += [self.port] + [random.randint(20000, 60000) for _ in range(TRIES)]
        for port in dict.fromkeys(ports):
            mapping = router.map(port, self.port)
            if mapping is not None:
                return mapping
        raise RuntimeError(f"the router refused every port tried over {router.method}")

    def _discover(self) -> Router | None:
        for method in self.methods:
            router = FINDERS[method]()
            if router is not None:
                self._router = router
                return router
        return None


class _UPnP:
    method = "UPnP"

    def __init__(self, upnp: miniupnpc.UPnP) -> None:
        self.upnp = upnp

    @classmethod
    def find(cls) -> _UPnP | None:
        upnp = miniupnpc.UPnP()
        upnp.discoverdelay = DISCOVER_MS
        if not upnp.discover():
            return None
        try:
            upnp.selectigd()  # raises when no device found is an Internet gateway
        except Exception:
            return None
        return cls(upnp)

    def map(self, external: int, internal: int) -> Mapping | None:
        upnp = self.upnp
        held = upnp.getspecificportmapping(external, "TCP")
        if held is not None and (held[0], held[1]) != (upnp.lanaddr, internal):
            return None
        try:
            added = upnp.addportmapping(external, "TCP", upnp.lanaddr, internal,
                                        DESCRIPTION, "", LEASE)
        except Exception:  # refused (e.g. a conflict): try another port
            return None
        return Mapping(upnp.externalipaddress(), external, internal) if added else None

    def unmap(self, mapping: Mapping) -> None:
        self.upnp.deleteportmapping(mapping.external_port, "TCP")


class _NatPmp:
    method = "NAT-PMP"

    def __init__(self, gateway: str, external_ip: str) -> None:
        self.gateway, self.external_ip = gateway, external_ip

    @classmethod
    def find(cls) -> _NatPmp | None:
        gateway = default_gateway()
        if gateway is None:
            return None
        try:
            return cls(gateway, NATPMP.get_public_address(gateway, retry=NATPMP_TRIES))
        except (NATPMP.NATPMPError, OSError):  # no answer, or the gateway refuses
            return None

    def map(self, external: int, internal: int) -> Mapping | None:
        got = NATPMP.map_tcp_port(external, internal, LEASE, gateway_ip=self.gateway,
                                  retry=NATPMP_TRIES, use_exception=False)
        if got.result != 0:
            return None
        # the router may grant another public port than asked (RFC 6886 §3.3): take it
        return Mapping(self.external_ip, int(got.public_port), internal, self.method)

    def unmap(self, mapping: Mapping) -> None:
        # a lifetime of 0 deletes the mapping (RFC 6886 §3.4)
        NATPMP.map_tcp_port(0, mapping.internal_port, 0, gateway_ip=self.gateway,
                            retry=NATPMP_TRIES)


FINDERS: dict[str, Callable[[], Router | None]] = {"UPnP": _UPnP.find, "NAT-PMP": _NatPmp.find}

# this thread's network namespace (/proc/net is the process's: the same for one thread)
ROUTES = (Path("/proc/thread-self/net/route"), Path("/proc/net/route"))


def default_gateway(routes: tuple[Path, ...] = ROUTES) -> str | None:
    """The IPv4 default route's gateway (Linux), None where there is none or no such file."""
    lines: list[str] = []
    for path in routes:
        try:
            lines = path.read_text().splitlines()[1:]
            break
        except OSError:
            continue
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 2:
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None
