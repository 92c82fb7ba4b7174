"""The NAT lab itself: homes reach the internet through their routers; nothing reaches in."""

from __future__ import annotations

import socket

from tests.support.natlab import INET_IP, Lab, lab_or_skip


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


def test_masquerade_out_nothing_in() -> None:
    with lab_or_skip() as lab:
        assert len(lab.homes) == 3 and all(len(h.hosts) >= 2 for h in lab.homes)
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


def test_symmetric_nat_changes_ports() -> None:
    with lab_or_skip() as lab:
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
