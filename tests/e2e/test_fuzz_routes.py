"""Every route of a real coordinator and a real peer agent, fed bad input (issue 14, attack 5).

The routes are enumerated from the two aiohttp routers, so a route added later is fuzzed
too. Each gets, over raw sockets (so headers can carry bytes no HTTP library would send):
path parameters that are not ids or are Unicode digits ('²'), query integers the same,
bearer tokens and tickets that are not UTF-8, JSON of the wrong types, 3,000 levels deep,
not JSON at all, bodies declared or sent far over the caps; and connections that send only
part of a request head or a body that trickles. The answers are counted: not one 5xx, every
slow connection closed by the server, and both servers healthy afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak import config
from p2pbak.coordinator.http.app import make_app as coordinator_app
from p2pbak.localgrid.grid import Grid, start_grid, wait_http
from p2pbak.peer.server import make_app as peer_app
from p2pbak.store.fragments import FragmentStore
from tests.support.grid import coordinator_ticket

pytestmark = pytest.mark.slow

TIMEOUTS = {"P2PBAK_HEADER_TIMEOUT": "2", "P2PBAK_BODY_GRACE": "2"}  # seconds, for the test
PATH_VALUES = ["%C2%B2", "%C2%B2%C2%B2", "x", "-1", "0", "9" * 40, "ab" * 32, "AB" * 32,
               "%FF%FE", "%00", "1e3", "%20"]
DEEP = [b"[" * 3000, b'{"a":' * 3000, b"[" * 3000 + b"]" * 3000]
BODIES = [b"", b"null", b"[]", b'"x"', b"1", b"{}", b'{"size": "1"}', b'{"size": 1e400}',
          b'{"fragments": [{"index": "\xc2\xb2"}]}', b'{"pack_ids": [1, 2]}',
          b'{"receipts": [[[]]]}', b"\xff\xfe\xfd", b'{"a": 1', *DEEP]


def routes() -> dict[str, list[tuple[str, str]]]:
    """(method, path template) of every route of both servers, read from their routers."""
    key = Ed25519PrivateKey.generate().public_key()
    out: dict[str, list[tuple[str, str]]] = {}
    for name, app in (("coordinator", coordinator_app(Path("unused.db"), run_jobs=False)),
                      ("peer", peer_app(_closed_store(), peer_id="0" * 32, ticket_key=key))):
        out[name] = sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                            if r.method != "*" and r.resource is not None})
    return out


def _closed_store() -> FragmentStore:
    import tempfile

    return FragmentStore(Path(tempfile.mkdtemp()))


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


async def raw(url: str, method: str, target: str, headers: dict[bytes, bytes],
              body: bytes = b"", declared: int | None = None) -> int:
    """One request over a fresh socket; the status, or 0 if the server closed without one."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    try:
        head = [f"{method} {target} HTTP/1.1".encode(), f"Host: {u.netloc}".encode(),
                b"Connection: close",
                b"Content-Length: " + str(len(body) if declared is None else declared).encode()]
        head += [k + b": " + v for k, v in headers.items()]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        with contextlib.suppress(ConnectionError):  # refused mid-body: an answer may be there
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1]) if line else 0
    except ConnectionError:
        return 0
    finally:
        writer.close()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    saved = {k: os.environ.get(k) for k in TIMEOUTS}
    os.environ.update(TIMEOUTS)  # inherited by the coordinator and peer processes
    try:
        g = start_grid(tmp_path_factory.mktemp("grid"), 1, heartbeat=1.0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield g
    finally:
        g.stop()
    for proc in g.processes():
        assert "Traceback" not in proc.output(), f"{proc.name} logged a traceback"


def auth_variants(cfg: config.Config) -> list[dict[bytes, bytes]]:
    good = f"Bearer {cfg.machine_id}.{cfg.secret}".encode()
    return [{}, {b"Authorization": good}, {b"Authorization": b"Bearer \xff\xfe.\xc3\x28"},
            {b"Authorization": b"Bearer " + cfg.machine_id.encode() + b".\xff" * 40},
            {b"Authorization": b"\xc2\xb2"}]


def ticket_variants() -> list[dict[bytes, bytes]]:
    deep = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=")
    return [{}, {b"X-P2PBAK-Ticket": b"\xff\xfe"}, {b"X-P2PBAK-Ticket": deep + b".AAAA"},
            {b"X-P2PBAK-Ticket": b"a.b.c"}, {b"X-P2PBAK-Ticket": b"." * 5000}]


async def fuzz(url: str, table: list[tuple[str, str]],
               headers: list[dict[bytes, bytes]]) -> Counter[int]:
    counts: Counter[int] = Counter()
    bad: list[str] = []
    json_type = {b"Content-Type": b"application/json"}

    async def one(method: str, target: str, h: dict[bytes, bytes], body: bytes = b"",
                  declared: int | None = None) -> None:
        status = await raw(url, method, target, {**json_type, **h}, body, declared)
        counts[status] += 1
        if status >= 500:
            bad.append(f"{method} {target} {h} {body[:40]!r} -> {status}")

    good = headers[1]
    for method, template in table:
        has_vars = "{" in template
        jobs = [one(method, fill(template, v), good) for v in PATH_VALUES[:None if has_vars
                                                                          else 1]]
        target = fill(template, "ab" * 32)
        jobs += [one(method, target, h) for h in headers]
        if method == "GET":
            jobs += [one(method, target + q, good) for q in
                     ("?limit=%C2%B2", "?limit=-1", "?limit=" + "9" * 30, "?limit=%FF",
                      "?a=1&a=2")]
        else:
            jobs += [one(method, target, good, body) for body in BODIES]
            jobs += [one(method, target, headers[2], DEEP[0]),
                     one(method, target, good, b"x" * (3 * 1024 * 1024)),
                     one(method, target, good, b"{}", declared=2**40)]
        await asyncio.gather(*jobs)
    assert not bad, "\n".join(bad[:20])
    return counts


async def slow_connections(url: str, method: str, path: str,
                           auth: bytes) -> list[asyncio.Task[bytes]]:
    """Connections that hold the server: half a request head, a head and no body, a body
    one byte a second. Each task ends with what the server sent before closing."""
    u = urlsplit(url)

    async def hold(first: bytes, drip: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        writer.write(first)
        got = b""
        try:
            for byte in drip:
                await writer.drain()
                try:
                    got = await asyncio.wait_for(reader.read(65536), 1.0)
                    if got or reader.at_eof():
                        return got
                except TimeoutError:
                    writer.write(bytes([byte]))
            return got + await asyncio.wait_for(reader.read(65536), 60)
        except ConnectionError:
            return got
        finally:
            writer.close()

    host = f"Host: {u.netloc}\r\n".encode()
    return [asyncio.create_task(c) for c in (
        hold(b"\r\n\r\n", b""),
        hold(b"GET /v1/health HTTP/1.1\r\n", b"X" * 120),
        hold(f"{method} {path} HTTP/1.1\r\n".encode() + host + auth + b"\r\n"
             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", b" " * 120),
    )]


def test_no_route_answers_5xx_and_both_servers_stay_healthy(grid: Grid) -> None:
    cfg = config.load(grid.peers[0].config)
    table = routes()
    peer_url = grid.peers[0].process.url
    peer_id = grid.peers[0].peer_id
    assert len(table["coordinator"]) >= 30 and len(table["peer"]) >= 5
    frag = "ab" * 32

    async def go() -> tuple[Counter[int], Counter[int], list[bytes]]:
        slow = await slow_connections(grid.url, "POST", "/v1/receipts",
                                      f"Authorization: Bearer {cfg.machine_id}.{cfg.secret}"
                                      .encode())
        wire = coordinator_ticket(grid, op="store", fragment=frag, size=1000,
                                  from_=cfg.machine_id, to=peer_id)
        slow += await slow_connections(peer_url, "PUT", f"/v1/fragments/{frag}",
                                       f"X-P2PBAK-Ticket: {wire}".encode())
        coord = await fuzz(grid.url, table["coordinator"], auth_variants(cfg))
        peer = await fuzz(peer_url, table["peer"], ticket_variants() + auth_variants(cfg)[2:])
        return coord, peer, list(await asyncio.wait_for(asyncio.gather(*slow), 120))

    coord, peer, held = asyncio.run(go())
    print(f"coordinator answers {dict(sorted(coord.items()))}; "
          f"peer answers {dict(sorted(peer.items()))}")
    assert sum(coord.values()) > 500 and sum(peer.values()) > 50
    assert not [s for s in (*coord, *peer) if s >= 500]
    assert coord[400] > 0 and coord[401] > 0 and peer[400] > 0 and peer[401] > 0
    # the server closed every held connection itself (a 408 for a body, or just closed)
    for answer in held:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert [a[:12] for a in held].count(b"HTTP/1.1 408") == 2, held
    assert wait_http(f"{grid.url}/v1/health")["ok"] is True
    assert wait_http(f"{peer_url}/v1/health")["ok"] is True
    assert grid.coordinator.alive() and grid.peers[0].process.alive()
