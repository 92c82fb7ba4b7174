"""The coordinator's HTTP API under load: 1, 2, 3 coordinators on one PostgreSQL and 1 on
SQLite (run through `python bench/coordinator.py --http`).

Registers P synthetic peers (each its own user, POST /v1/users, /v1/peer, /v1/heartbeat on
made-up addresses), then for --seconds runs W concurrent workers spread round-robin over
the coordinators: half send heartbeats, a quarter store packs (plan, tickets, commit), a
quarter hand in the store tickets of committed packs as the holders' receipts (paid
against the committed placement). Then heartbeats alone for half as long. Prints
requests/s and p50/p99 latency per request kind, answers that were not 2xx, the ledger's
sum after (must be exactly 0) and the heartbeat rate over the one 100k peers need at the
default interval. The load generator is one Python process on the same machine: it shares
the cores with the coordinators and PostgreSQL, so the figures are a floor.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from p2pbak.localgrid.grid import Process, free_port, serve
from p2pbak.store.db import bank
from p2pbak.store.db.database import Database

HEARTBEAT_INTERVAL = 60.0  # `peer run --heartbeat-interval` default, seconds
TARGET_PEERS = 100_000
PACK = 1_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Peer:
    token: str
    url: str
    peer_id: str


@dataclass
class Load:
    """What one run saw: latencies (s) per request kind, refusals, the receipts queue."""

    urls: list[str]
    session: aiohttp.ClientSession
    peers: list[Peer] = field(default_factory=list)
    seen: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    receipts: asyncio.Queue[tuple[Peer, str]] = field(default_factory=asyncio.Queue)
    packs: itertools.count[int] = field(default_factory=itertools.count)

    async def call(self, at: int, kind: str, method: str, path: str, body: Any,
                   token: str = "") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        t0 = time.perf_counter()
        async with self.session.request(method, self.urls[at % len(self.urls)] + path,
                                        json=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
        if resp.status >= 300:
            self.failed[kind] += 1
            return None
        self.seen[kind].append(time.perf_counter() - t0)
        return answer


async def register(load: Load, i: int) -> Peer:
    made = await load.call(0, "setup", "POST", "/v1/users", {
        "user": f"bench{i}", "salt": b64(b"s" * 16), "login_key": b64(b"k" * 32),
        "keyfile": b64(b"wrapped"), "machine": "m"})
    token = f"{made['machine_id']}.{made['secret']}"
    url = f"http://10.{i // 250 % 250}.{i % 250}.1:9000"
    await load.call(0, "setup", "POST", "/v1/peer", {
        "url": url, "space": 10**12, "upload": 10**7, "download": 10**7}, token)
    await heartbeat(load, 0, Peer(token, url, made["machine_id"]), "setup")
    return Peer(token, url, made["machine_id"])


async def heartbeat(load: Load, at: int, peer: Peer, kind: str = "heartbeat") -> None:
    await load.call(at, kind, "POST", "/v1/heartbeat",
                    {"url": peer.url, "stored_bytes": 0, "free_bytes": 10**12}, peer.token)


async def store(load: Load, at: int, owner: Peer) -> None:
    """Plan, tickets, commit of one pack; its tickets queued as the holders' receipts."""
    plan = await load.call(at, "plan", "POST", "/v1/packs/plan", {"size": PACK}, owner.token)
    if plan is None:
        return
    pack = hashlib.sha256(f"pack{next(load.packs)}{random.random()}".encode()).hexdigest()
    frags = [{"index": i, "fragment_id": hashlib.sha256(f"{pack}/{i}".encode()).hexdigest(),
              "size": plan["fragment_size"], "peer_id": p["peer_id"]}
             for i, p in enumerate(plan["peers"][:plan["n"]])]
    got = await load.call(at, "tickets", "POST", f"/v1/packs/{pack}/tickets",
                          {"fragments": frags}, owner.token)
    if got is None:
        return
    body = {k: plan[k] for k in ("k", "n", "repair", "success")} | {
        "length": PACK, "fragments": frags}
    if await load.call(at, "commit", "POST", f"/v1/packs/{pack}/commit", body,
                       owner.token) is None:
        return
    by_id = {p.peer_id: p for p in load.peers}
    for frag, wire in zip(frags, got["tickets"], strict=True):
        load.receipts.put_nowait((by_id[frag["peer_id"]], wire))


async def hand_in(load: Load, at: int) -> None:
    try:
        holder, wire = await asyncio.wait_for(load.receipts.get(), 0.5)
    except TimeoutError:
        return
    await load.call(at, "receipts", "POST", "/v1/receipts", {"receipts": [wire]},
                    holder.token)


Work = Callable[[Load, int], Awaitable[None]]


def beat(load: Load, at: int) -> Awaitable[None]:
    return heartbeat(load, at, random.choice(load.peers))


def pack(load: Load, at: int) -> Awaitable[None]:
    return store(load, at, random.choice(load.peers))


async def run_for(load: Load, seconds: float, works: list[Work]) -> float:
    """Each work in a loop on its own worker (worker i on coordinator i) for `seconds`."""
    stop = time.monotonic() + seconds

    async def worker(i: int, work: Work) -> None:
        while time.monotonic() < stop:
            await work(load, i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i, w) for i, w in enumerate(works)))
    return time.perf_counter() - t0


def ms(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def drive(urls: list[str], peers: int, workers: int, seconds: float
                ) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=workers + 8)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        load = Load(urls, session)
        for start in range(0, peers, 16):  # 16 registrations at a time
            load.peers += await asyncio.gather(
                *(register(load, i) for i in range(start, min(peers, start + 16))))
        mix: list[Work] = [beat, beat, pack, hand_in] * (workers // 4)
        took = await run_for(load, seconds, mix)
        mixed = {k: list(v) for k, v in load.seen.items() if k != "setup"}
        failed = {k: v for k, v in load.failed.items() if k != "setup"}
        load.seen.clear()
        alone = await run_for(load, seconds / 2, [beat] * workers)
        beats = len(load.seen["heartbeat"]) / alone
    total = sum(len(v) for v in mixed.values())
    return {"requests/s": total / took, "kinds": {
        k: (len(v) / took, ms(v, 50), ms(v, 99)) for k, v in sorted(mixed.items())},
        "failed": failed, "heartbeats/s alone": beats}


async def ledger_sum(db: Path | str) -> tuple[int, bool]:
    opened = await Database.open(db, migrate=False)
    try:
        audit = await bank.audit(opened)
        return audit.sum, audit.ok
    finally:
        await opened.close()


def one_setup(name: str, db: Path | str, coordinators: int, logs: Path, peers: int,
              workers: int, seconds: float) -> dict[str, Any]:
    procs: list[Process] = []
    try:
        for i in range(coordinators):
            procs.append(serve(db, free_port(), logs / f"{name}-{i}.log"))
        out = asyncio.run(drive([p.url for p in procs], peers, workers, seconds))
    finally:
        for p in procs:
            p.stop()
    out["ledger sum"], out["audit ok"] = asyncio.run(ledger_sum(db))
    return out


def report(name: str, r: dict[str, Any]) -> None:
    need = TARGET_PEERS / HEARTBEAT_INTERVAL
    print(f"\n{name}: {r['requests/s']:.0f} requests/s mixed; ledger sum after "
          f"{r['ledger sum']} µc (audit {'ok' if r['audit ok'] else 'FAILED'})")
    print(f"  {'request':<10}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for kind, (rate, p50, p99) in r["kinds"].items():
        print(f"  {kind:<10}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}")
    if r["failed"]:
        print(f"  not 2xx: {dict(r['failed'])}")
    print(f"  heartbeats alone: {r['heartbeats/s alone']:.0f}/s = "
          f"{r['heartbeats/s alone'] / need:.2f} × the {need:.0f}/s of "
          f"{TARGET_PEERS:,} peers at one per {HEARTBEAT_INTERVAL:.0f} s")
