"""Uploads direct and relayed in the NAT lab, and what relaying costs the relay in CPU.

Needs root (Linux network namespaces, tests/natlab.py). In the lab's internet: a public
peer (the real fragment server, net/peer.py) and a relay (net/relay.py); behind home 1 a
peer reachable only through that relay (net/peer_reach.Reacher's link); behind home 2 the
client (PeerClient), which stores --count fragments of --size KiB:
  1. direct to a public peer in plain HTTP (as on loopback);
  2. direct to a public peer over TLS with its certificate pinned (net/peertls.py), as every
     peer beyond loopback is reached;
  3. to the home-1 peer through the relay, sealed end to end (net/seal.py) as in the grid;
  4. to the same home-1 peer over a hole-punched link (net/punch.py: TCP simultaneous open
     between the two routers, TLS pinned; the punch itself is timed too), the relay
     carrying only the punch request.
Prints MB/s of each, the relayed/direct and punched/direct ratios, and the relay process's
CPU seconds per MB carried (user + system, read from the relay itself). The relay also
answers `GET /v1/observed` (coordinator/http/reach.py's own answer) in place of a
coordinator. Each role is this script again, run with `ip netns exec`.

    sudo python bench/nat.py [--count N] [--size KiB] [--parallel P]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402

from p2pbak.coordinator.http.reach import where_from  # noqa: E402
from p2pbak.localgrid.grid import child_env  # noqa: E402
from p2pbak.net import peertls, seal, tickets  # noqa: E402
from p2pbak.net.api import CoordinatorClient, PeerClient  # noqa: E402
from p2pbak.net.punch import Links  # noqa: E402
from p2pbak.net.relay import RelayState, add_relay, relay_url  # noqa: E402
from p2pbak.net.relay_mux import Mux  # noqa: E402
from p2pbak.peer.holes import HoleOpener  # noqa: E402
from p2pbak.peer.reach import Reacher  # noqa: E402
from p2pbak.peer.server import STATE, make_app  # noqa: E402
from p2pbak.store.fragments import FragmentStore  # noqa: E402

INET = "198.18.0.1"
RELAY_PORT, PUBLIC_PORT, HOME_PORT, TLS_PORT = 8700, 8601, 8601, 8602
RELAY_ID, RELAYED = "ab" * 16, "cd" * 16
PEER_ID = "bench-peer"


def _key(hex_key: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


async def _forever() -> None:
    await asyncio.Event().wait()


# -- roles (each its own process, in its namespace) ----------------------------------------

async def role_peer(key: Ed25519PrivateKey, root: Path, port: int, relay: str,
                    link: str, tls: bool) -> None:
    store = FragmentStore(root).open()
    app = make_app(store, peer_id=PEER_ID, ticket_key=key.public_key())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context, pin = peertls.load_or_create(root) if tls else (None, "")
    await web.TCPSite(runner, "0.0.0.0", port, ssl_context=context,
                      reuse_port=bool(relay and context)).start()
    if not relay:
        await _forever()
    coord = CoordinatorClient(relay, machine_id=PEER_ID, secret="-")  # the relay's /v1/observed
    if context is not None:  # as the agent does beyond loopback (peer/agent.py)
        app[STATE].opener = HoleOpener(coord, port, pin, runner.server, context)
    reacher = Reacher("0.0.0.0", port, relay=False, on_change=lambda r: None, tls_pin=pin,
                      link_key=X25519PrivateKey.from_private_bytes(bytes.fromhex(link)))
    ticket = tickets.issue(key, op="relay", fragment=RELAYED, size=0, from_=RELAYED,
                           to=RELAY_ID)
    async with aiohttp.ClientSession() as session:
        reacher._session = session
        async with session.ws_connect(relay_url(relay, RELAYED) + "/connect",
                                      headers={tickets.HEADER: ticket}) as ws:
            await Mux(ws, on_open=reacher._serve, first_id=2).run()


async def role_relay(key: Ed25519PrivateKey, port: int) -> None:
    state = RelayState(key=key.public_key, relay_id=RELAY_ID)

    async def stats(request: web.Request) -> web.Response:
        t = os.times()
        return web.json_response({"cpu": t.user + t.system, "carried": state.carried,
                                  "linked": RELAYED in state.tunnels})

    async def observed(request: web.Request) -> web.Response:
        return where_from(request)

    app = web.Application()
    add_relay(app, state)
    app.router.add_get("/stats", stats)
    app.router.add_get("/v1/observed", observed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    await _forever()


async def role_client(key: Ed25519PrivateKey, url: str, count: int, size: int,
                      parallel: int, punch: str) -> None:
    frags = [os.urandom(size) for _ in range(count)]
    import blake3

    ids = [blake3.blake3(f).hexdigest() for f in frags]
    wires = [tickets.issue(key, op="store", fragment=i, size=size, from_="bench", to=PEER_ID)
             for i in ids]
    slots = asyncio.Semaphore(parallel)
    coord = CoordinatorClient(punch or "http://unused", machine_id="bench", secret="-")
    links = Links(coord.observed) if punch else None
    async with coord, PeerClient(links=links) as client:
        async def put(n: int) -> None:
            async with slots:
                await client.put_fragment(url, ids[n], frags[n], wires[n])
        start = time.perf_counter()
        await asyncio.gather(*(put(n) for n in range(count)))
        spent = time.perf_counter() - start
    print(json.dumps({"seconds": spent, "bytes": count * size,
                      "punched": links.punched if links else 0}))


# -- the bench -------------------------------------------------------------------------------

def _log(role: str) -> int:
    """Where a role's stderr goes (kept for a failed run): a file in the temp folder."""
    return os.open(os.path.join(tempfile.gettempdir(), f"p2pbak-bench-nat-{role}.log"),
                   os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _spawn(ns: str, *args: str) -> subprocess.Popen[bytes]:
    log = _log(args[0])
    try:
        return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                                env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
    finally:
        os.close(log)


def _stats(lab: object, url: str) -> dict[str, float]:
    from tests.support.natlab import Lab

    assert isinstance(lab, Lab)
    return dict(lab.get_json(lab.inet, url))


def bench(count: int, size_kib: int, parallel: int) -> int:
    from tests.support.natlab import Lab, wait_until, why_no_lab

    why = why_no_lab()
    if why:
        print(f"bench/nat.py: {why}", file=sys.stderr)
        return 1
    key_hex = Ed25519PrivateKey.generate().private_bytes_raw().hex()
    link = X25519PrivateKey.generate()
    lab = Lab(tag=f"p2b{os.getpid() % 100000}", inet="")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lab.build(Path(tmp) / "lab", homes=2, hosts=1)
            client_ns, home_ns = lab.homes[1].hosts[0], lab.homes[0].hosts[0]
            pin = peertls.load_or_create(Path(tmp) / "tls")[1]  # the TLS peer's, made here
            procs.append(_spawn(lab.inet, "relay", key_hex, "--port", str(RELAY_PORT)))
            procs.append(_spawn(lab.inet, "peer", key_hex, "--root", f"{tmp}/pub",
                                "--port", str(PUBLIC_PORT)))
            procs.append(_spawn(lab.inet, "peer", key_hex, "--root", f"{tmp}/tls",
                                "--port", str(TLS_PORT), "--tls"))
            stats_url = f"http://{INET}:{RELAY_PORT}/stats"
            wait_until(lambda: _stats(lab, stats_url), 90, "the relay")  # then link to it
            procs.append(_spawn(home_ns, "peer", key_hex, "--root", f"{tmp}/home",
                                "--port", str(HOME_PORT), "--tls",
                                "--relay", f"http://{INET}:{RELAY_PORT}",
                                "--link", link.private_bytes_raw().hex()))
            wait_until(lambda: _stats(lab, stats_url)["linked"], 90, "the relayed peer's link")
            wait_until(lambda: lab.get_json(lab.inet, f"http://{INET}:{PUBLIC_PORT}/v1/health"),
                       90, "the public peer")
            relayed = relay_url(f"http://{INET}:{RELAY_PORT}", RELAYED) + seal.KEY_MARK \
                + seal.public_hex(link)
            runs = {"direct": (f"http://{INET}:{PUBLIC_PORT}", ""),
                    "tls": (peertls.pinned(f"https://{INET}:{TLS_PORT}", pin), ""),
                    "relayed": (relayed, ""),
                    "punched": (relayed, f"http://{INET}:{RELAY_PORT}")}
            rates, cpu, carried = {}, {}, {}
            for name, (url, punch) in runs.items():
                before = _stats(lab, stats_url)
                r = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, __file__,
                                    "client", key_hex, "--url", url, "--count", str(count),
                                    "--size", str(size_kib * 1024), "--parallel",
                                    str(parallel), "--punch", punch], capture_output=True,
                                   text=True, timeout=600, env=child_env())
                if r.returncode != 0:
                    print(f"bench/nat.py: {name} run failed: {r.stderr.strip()[-500:]}",
                          file=sys.stderr)
                    return 1
                got = json.loads(r.stdout.strip().splitlines()[-1])
                if punch and not got["punched"]:
                    print("bench/nat.py: the hole punch to the home-1 peer failed",
                          file=sys.stderr)
                    return 1
                after = _stats(lab, stats_url)
                rates[name] = got["bytes"] / got["seconds"] / 1e6
                carried[name] = (after["carried"] - before["carried"]) / 1e6
                cpu[name] = (after["cpu"] - before["cpu"]) / carried[name] \
                    if carried[name] else 0.0
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        lab.close()
    print(f"upload of {count} x {size_kib} KiB fragments, {parallel} at once, "
          "home 2 -> target:")
    print(f"  direct to a public peer:                          {rates['direct']:8.1f} MB/s")
    print(f"  direct, TLS with the certificate pinned:          {rates['tls']:8.1f} MB/s  "
          f"(ratio TLS/plain {rates['tls'] / rates['direct']:.2f})")
    print(f"  to a home-1 peer via the relay, sealed end to end: {rates['relayed']:8.1f} MB/s  "
          f"(ratio relayed/direct {rates['relayed'] / rates['direct']:.2f})")
    print(f"  to the home-1 peer hole-punched, TLS pinned:       {rates['punched']:8.1f} MB/s  "
          f"(ratio punched/direct {rates['punched'] / rates['direct']:.2f}; the relay "
          f"carried {carried['punched'] * 1000:.0f} kB of it)")
    print(f"  relay CPU: {cpu['relayed'] * 1000:.1f} ms per MB carried")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role", nargs="?", default="bench", choices=("bench", "peer", "relay",
                                                                 "client"))
    ap.add_argument("key", nargs="?", default="")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--size", type=int, default=4096, help="KiB per fragment (roles: bytes)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--root", default="")
    ap.add_argument("--relay", default="")
    ap.add_argument("--url", default="")
    ap.add_argument("--link", default="", help="peer role: its X25519 link key (hex)")
    ap.add_argument("--tls", action="store_true", help="peer role: serve TLS (its root's cert)")
    ap.add_argument("--punch", default="", help="client role: hole-punch, asking this URL "
                    "for its public address")
    a = ap.parse_args()
    if a.role == "bench":
        return bench(a.count, a.size, a.parallel)
    key = _key(a.key)
    if a.role == "peer":
        asyncio.run(role_peer(key, Path(a.root), a.port, a.relay, a.link, a.tls))
    elif a.role == "relay":
        asyncio.run(role_relay(key, a.port))
    else:
        asyncio.run(role_client(key, a.url, a.count, a.size, a.parallel, a.punch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
