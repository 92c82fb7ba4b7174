"""Port mapping on the home router (UPnP IGD), as Syncthing does, through miniupnpc.

A peer behind a NAT router that offers UPnP asks it to forward a TCP port of its public
address to this peer's listening port, for a lease it renews while it runs and removes on
exit. The mapped address is then offered to the coordinator, which dials it back like any
other (peer/reach.py): if it answers, the peer is "port-mapped" and needs no relay.
miniupnpc is blocking: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import miniupnpc

log = logging.getLogger("p2pbak.peer")

LEASE = 3600  # seconds a mapping lives unless renewed (renewed at every reachability check)
DISCOVER_MS = 1000  # how long to wait for routers to answer the SSDP search
TRIES = 4  # other external ports tried when ours is taken (another peer in the same home)
DESCRIPTION = "p2pbak peer"


@dataclass(frozen=True)
class Mapping:
    external_ip: str
    external_port: int
    internal_port: int

    @property
    def address(self) -> str:
        return f"{self.external_ip}:{self.external_port}"


class PortMapper:
    """One mapping of this peer's port on the router, if the router offers UPnP."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mapping: Mapping | None = None
        self._upnp: miniupnpc.UPnP | None = None

    async def ensure(self) -> Mapping | None:
        """Map (or renew) our port; None when no router maps ports for us."""
        try:
            self.mapping = await asyncio.to_thread(self._ensure)
        except Exception as exc:  # miniupnpc raises bare Exception for every refusal
            log.info("no port mapping: %s", exc)
            self.mapping = None
        return self.mapping

    async def remove(self) -> None:
        mapping, self.mapping = self.mapping, None
        if mapping is not None and self._upnp is not None:
            try:
                await asyncio.to_thread(self._upnp.deleteportmapping,
                                        mapping.external_port, "TCP")
                log.info("removed the port mapping %s", mapping.address)
            except Exception as exc:  # the router may be gone: the lease ends by itself
                log.info("could not remove the port mapping %s: %s", mapping.address, exc)

    def _ensure(self) -> Mapping | None:
        upnp = self._upnp or self._discover()
        if upnp is None:
            return None
        external = upnp.externalipaddress()
        ports = [self.mapping.external_port] if self.mapping else []
        ports += [self.port] + [random.randint(20000, 60000) for _ in range(TRIES)]
        for port in dict.fromkeys(ports):
            if self._add(upnp, port):
                return Mapping(external, port, self.port)
        raise RuntimeError(f"the router at {upnp.lanaddr} refused every port tried")

    def _discover(self) -> miniupnpc.UPnP | None:
        upnp = miniupnpc.UPnP()
        upnp.discoverdelay = DISCOVER_MS
        if not upnp.discover():
            return None
        upnp.selectigd()  # raises when no device found is an Internet gateway
        self._upnp = upnp
        return upnp

    def _add(self, upnp: miniupnpc.UPnP, port: int) -> bool:
        """Our mapping of `port` (new or renewed); False when it is someone else's."""
        held = upnp.getspecificportmapping(port, "TCP")
        if held is not None and (held[0], held[1]) != (upnp.lanaddr, self.port):
            return False
        try:
            return bool(upnp.addportmapping(port, "TCP", upnp.lanaddr, self.port,
                                            DESCRIPTION, "", LEASE))
        except Exception:  # refused (e.g. a conflict): try another port
            return False
