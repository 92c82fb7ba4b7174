"""The NAT lab itself: homes reach the internet through their routers; nothing reaches in,
but for what a UPnP router maps (through peer/portmap.py, against a real miniupnpd)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from p2pbak.peer.portmap import Mapping, PortMapper, default_gateway
from tests.support.natlab import INET_IP, Lab, lab_or_skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_or_skip(tmp_path_factory.mktemp("lab")) as built:
        yield built


def _connect(lab: Lab, ns: str, host: str, port: int) -> str:
    """'ok', or why a TCP connection from `ns` to host:port failed (bounded, 3 s)."""
    def attempt() -> str:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return "ok"
        except OSError as exc:
            return type(exc).__name__
    return lab.inside(ns, attempt)


def _observed(lab: Lab, ns: str, listener_ns: str) -> tuple[str, int]:
    """The address a listener in `listener_ns` sees a connection from `ns` come from."""
    server = lab.inside(listener_ns, lambda: socket.create_server((INET_IP, 0)))
    try:
        port = server.getsockname()[1]
        lab.inside(ns, lambda: socket.create_connection((INET_IP, port), timeout=3).close())
        conn, addr = server.accept()
        conn.close()
        return addr[0], addr[1]
    finally:
        server.close()


def test_masquerade_out_nothing_in(lab: Lab) -> None:
    assert len(lab.homes) == 4 and all(len(h.hosts) >= 2 for h in lab.homes)
    home, other = lab.homes[0], lab.homes[1]
    listener = lab.inside(home.hosts[0], lambda: socket.create_server(("0.0.0.0", 8601)))
    try:
        # out: the internet sees the router's address, not the home's
        ip, _ = _observed(lab, home.hosts[0], lab.inet)
        assert ip == home.wan_ip
        # in: neither the LAN address nor the router's address reach the listener
        assert _connect(lab, lab.inet, home.host_ip(0), 8601) != "ok"
        assert _connect(lab, lab.inet, home.wan_ip, 8601) != "ok"
        assert _connect(lab, other.hosts[0], home.wan_ip, 8601) != "ok"
        # inside the home it is reachable
        assert _connect(lab, home.hosts[1], home.host_ip(0), 8601) == "ok"
    finally:
        listener.close()


def test_symmetric_nat_changes_ports(lab: Lab) -> None:
    sym = next(h for h in lab.homes if h.symmetric)
    plain = next(h for h in lab.homes if not h.symmetric)
    # a plain MASQUERADE keeps the source port when it is free; --random-fully never does
    bound = []
    for home in (plain, sym):
        def from_port() -> socket.socket:
            s = socket.socket()
            s.bind(("0.0.0.0", 40001))
            return s
        bound.append(lab.inside(home.hosts[0], from_port))
    server = lab.inside(lab.inet, lambda: socket.create_server((INET_IP, 0)))
    try:
        port = server.getsockname()[1]
        seen = []
        for home, s in zip((plain, sym), bound, strict=True):
            lab.inside(home.hosts[0], lambda s=s: s.connect((INET_IP, port)))
            conn, addr = server.accept()
            conn.close()
            seen.append(addr)
        assert seen[0] == (plain.wan_ip, 40001)
        assert seen[1][0] == sym.wan_ip and seen[1][1] != 40001
    finally:
        server.close()
        for s in bound:
            s.close()


def test_a_upnp_router_maps_a_port_and_removes_it(lab: Lab) -> None:
    upnp = next(h for h in lab.homes if h.upnp)
    plain = lab.homes[0]
    ns = upnp.hosts[0]
    listener = lab.inside(ns, lambda: socket.create_server(("0.0.0.0", 8601)))
    mapper = PortMapper(8601)
    try:
        assert _connect(lab, lab.inet, upnp.wan_ip, 8601) != "ok"
        got = lab.inside(ns, lambda: asyncio.run(mapper.ensure()), 30)
        assert got == Mapping(upnp.wan_ip, 8601, 8601)
        assert _connect(lab, lab.inet, upnp.wan_ip, 8601) == "ok"  # in, from the internet
        # the second host of that home asks for the same port: it gets another one
        other = PortMapper(8601)
        second = lab.inside(upnp.hosts[1], lambda: asyncio.run(other.ensure()), 30)
        assert second is not None and second.external_port != 8601
        # renewing keeps our port; removing closes it again
        assert lab.inside(ns, lambda: asyncio.run(mapper.ensure()), 30) == got
        lab.inside(ns, lambda: asyncio.run(mapper.remove()), 30)
        assert _connect(lab, lab.inet, upnp.wan_ip, 8601) != "ok"
        lab.inside(upnp.hosts[1], lambda: asyncio.run(other.remove()), 30)
    finally:
        listener.close()
    # a router that maps no ports (neither UPnP nor NAT-PMP): no mapping, and no error
    assert lab.inside(plain.hosts[0], lambda: asyncio.run(PortMapper(8601).ensure()), 30) \
        is None


def test_a_nat_pmp_router_maps_a_port_and_removes_it(lab: Lab) -> None:
    home = next(h for h in lab.homes if h.upnp)  # its miniupnpd answers NAT-PMP too
    ns = home.hosts[0]
    assert lab.inside(ns, default_gateway) == f"{home.lan}.1"
    listener = lab.inside(ns, lambda: socket.create_server(("0.0.0.0", 8603)))
    mapper = PortMapper(8603, methods=("NAT-PMP",))
    try:
        assert _connect(lab, lab.inet, home.wan_ip, 8603) != "ok"
        got = lab.inside(ns, lambda: asyncio.run(mapper.ensure()), 30)
        assert got == Mapping(home.wan_ip, 8603, 8603, "NAT-PMP")
        assert _connect(lab, lab.inet, home.wan_ip, 8603) == "ok"  # in, from the internet
        assert lab.inside(ns, lambda: asyncio.run(mapper.ensure()), 30) == got  # renewed
        lab.inside(ns, lambda: asyncio.run(mapper.remove()), 30)
        assert _connect(lab, lab.inet, home.wan_ip, 8603) != "ok"
    finally:
        listener.close()
