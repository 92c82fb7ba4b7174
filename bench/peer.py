"""The peer agent's fragment server against a bare HTTP file server, and its caps in practice.

Both servers run on 127.0.0.1 in this process and get the same fragments over the same
client (aiohttp, --parallel requests at once):
  1. store and fetch throughput of the real peer app (tickets, replay memory, BLAKE3 on
     the way in and out, fsync, atomic link) as a ratio to a bare aiohttp server that only
     streams the body to a file, fsyncs it, renames it, fsyncs the folder (the same
     durability), and reads it back;
  2. the rates stores and fetches reach under --cap download and upload caps, as ratios
     to the cap.
Exits 1 if a ratio is outside its bound.

    python bench/peer.py [--count N] [--size KiB] [--parallel P] [--cap KB/s]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
import blake3  # noqa: E402
from aiohttp import web  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from p2pbak.config import Supply, format_rate, fsync_dir  # noqa: E402
from p2pbak.net import tickets  # noqa: E402
from p2pbak.net.ratelimit import TokenBucket, make_app  # noqa: E402
from p2pbak.store.fragments import FragmentStore  # noqa: E402

# The peer app checks a signature and the replay table per request and hashes every byte it
# stores and serves (about 0.3 + 0.3 ms per MiB here), which a bare server does not; it must
# still keep 40% of the bare server's throughput.
THROUGHPUT_BOUND = 0.4
CAP_BOUND = 1.02  # and never goes more than 2% over a cap (timing noise)


def bare_app(root: Path) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tmp = root / f".{name}.tmp"
        fh = open(tmp, "wb")  # noqa: SIM115
        async for chunk in request.content.iter_chunked(64 * 1024):
            fh.write(chunk)

        def finish() -> None:  # off the event loop, as the peer app does
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, root / name)
            fsync_dir(root)  # the same durability as the peer app

        await asyncio.to_thread(finish)
        return web.Response(status=201)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=(root / request.match_info["name"]).read_bytes())

    app = web.Application()
    app.add_routes([web.put("/v1/fragments/{name}", put), web.get("/v1/fragments/{name}", get)])
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


Ticket = Callable[[str, str, int], str]


async def transfer(url: str, frags: list[tuple[str, bytes]], parallel: int,
                   ticket: Ticket) -> tuple[float, float]:
    """Seconds to store every fragment, then to fetch every fragment."""
    slots = asyncio.Semaphore(parallel)
    # tickets are signed before the clock starts: the coordinator's work, not the peer's
    signed = {(op, fid): ticket(op, fid, len(data)) for fid, data in frags
              for op in ("store", "fetch")}
    async with aiohttp.ClientSession() as s:
        async def one(method: str, fid: str, data: bytes | None) -> None:
            async with slots:
                op = "store" if method == "PUT" else "fetch"
                headers = {tickets.HEADER: signed[op, fid]}
                async with s.request(method, f"{url}/v1/fragments/{fid}", data=data,
                                     headers=headers) as r:
                    body = await r.read()
                    if r.status >= 300 or (method == "GET" and len(body) == 0):
                        raise SystemExit(f"{method} {fid[:8]} failed: {r.status} {body[:80]!r}")

        async def phase(method: str) -> float:
            began = time.perf_counter()
            await asyncio.gather(*(one(method, fid, data if method == "PUT" else None)
                                   for fid, data in frags))
            return time.perf_counter() - began

        return await phase("PUT"), await phase("GET")


async def run(count: int, size: int, parallel: int, cap: int) -> bool:
    frags = []
    for _ in range(count):
        data = os.urandom(size)
        frags.append((blake3.blake3(data).hexdigest(), data))
    total = count * size
    key = Ed25519PrivateKey.generate()

    def sign(op: str, fid: str, n: int) -> str:
        return tickets.issue(key, op=op, fragment=fid, size=n, from_="bench", to="peer")

    bare, peer = (1e9, 1e9), (1e9, 1e9)
    for _ in range(3):  # alternate, keep each side's best: warm caches for both
        with tempfile.TemporaryDirectory() as d:
            runner, url = await serve(bare_app(Path(d)))
            bare = _best(bare, await transfer(url, frags, parallel, lambda *a: ""))
            await runner.cleanup()
        peer = _best(peer, await peer_transfer(frags, parallel, key, sign))
    ok = True
    for name, b, p in (("store", bare[0], peer[0]), ("fetch", bare[1], peer[1])):
        ratio = b / p  # peer throughput / bare throughput
        ok &= ratio >= THROUGHPUT_BOUND
        print(f"{name}: peer app {format_rate(int(total / p))}, bare server "
              f"{format_rate(int(total / b))}, ratio {ratio:.2f} (bound >= {THROUGHPUT_BOUND})")
    ok &= await capped(frags[: max(1, (2 * cap) // size + 1)], cap, parallel, key, sign)
    return ok


async def peer_transfer(frags: list[tuple[str, bytes]], parallel: int,
                        key: Ed25519PrivateKey, sign: Ticket,
                        caps: Supply | None = None) -> tuple[float, float]:
    """transfer() through the real peer app over a fresh fragment store."""
    with tempfile.TemporaryDirectory() as d:
        store = FragmentStore(Path(d)).open()
        runner, url = await serve(make_app(store, peer_id="peer",
                                           ticket_key=key.public_key(), caps=caps))
        times = await transfer(url, frags, parallel, sign)
        await runner.cleanup()
        store.close()
    return times


def _best(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return min(a[0], b[0]), min(a[1], b[1])


async def capped(frags: list[tuple[str, bytes]], cap: int, parallel: int,
                 key: Ed25519PrivateKey, sign: Ticket) -> bool:
    """Stores under the download cap, then fetches under the upload cap."""
    total = sum(len(d) for _, d in frags)
    times = await peer_transfer(frags, parallel, key, sign, Supply(download=cap, upload=cap))
    ok = True
    burst = TokenBucket(cap).burst  # the bytes a cap lets through at once
    for name, seconds in zip(("download (stores)", "upload (fetches)"), times, strict=True):
        ratio = (total - burst) / seconds / cap
        ok &= ratio <= CAP_BOUND
        print(f"{name} cap {format_rate(cap)}: {total} bytes at "
              f"{format_rate(int(total / seconds))}, ratio to cap (less the "
              f"{int(burst)}-byte burst) {ratio:.3f} "
              f"(bound <= {CAP_BOUND})")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--size", type=int, default=1024, help="fragment size in KiB")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--cap", type=int, default=2000, help="download cap in KB/s")
    a = ap.parse_args()
    ok = asyncio.run(run(a.count, a.size * 1024, a.parallel, a.cap * 1000))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
