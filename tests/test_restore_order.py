"""The order a restorer asks holders for a pack's fragments (retrieval, op. 3; work
allocation, §2.4): GET /v1/packs/{id} over real HTTP lists online holders first, then the
lowest account balance first, so that restores pay the accounts that need income."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from p2pbak.coordinator.http.app import make_app
from p2pbak.coordinator.http.common import COORD
from p2pbak.coordinator.service import Coordinator
from p2pbak.localgrid.grid import free_port
from p2pbak.market.bank import BANK, Posting
from p2pbak.store.db import bank
from p2pbak.store.db import tasks as store
from p2pbak.store.db.bank import user_account
from p2pbak.store.db.database import now
from tests.repair_support import fid

ONLINE_WINDOW = 60
PEERS = 10
PACK = 1_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Member:
    """One user with one machine, speaking to the coordinator over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, url: str, name: str) -> None:
        self.http, self.url, self.name = http, url, name
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.url + path, json=body,
                                     headers=headers) as resp:
            got = await resp.json()
            assert 200 <= resp.status < 300, (method, path, resp.status, got)
            return got

    async def join(self, i: int) -> str:
        """Register, announce a peer on its own /24, report in; the machine (peer) id."""
        made = await self.call("POST", "/v1/users", {
            "user": self.name, "salt": b64(os.urandom(16)), "login_key": b64(os.urandom(32)),
            "keyfile": b64(b"wrapped"), "machine": "m"})
        self.token = f"{made['machine_id']}.{made['secret']}"
        peer_url = f"http://10.0.{i}.1:8421"
        await self.call("POST", "/v1/peer", {"url": peer_url, "space": 10**9,
                                             "upload": 10**6, "download": 10**6})
        await self.call("POST", "/v1/heartbeat", {"url": peer_url, "stored_bytes": 0,
                                                  "free_bytes": 10**9})
        return str(made["machine_id"])

    async def back_up(self, pack: str) -> list[dict[str, Any]]:
        """Plan, take store tickets and commit all n fragments; the fragments."""
        plan = await self.call("POST", "/v1/packs/plan", {"size": PACK})
        frags = [{"index": i, "fragment_id": fid(f"{pack}/{i}"),
                  "size": plan["fragment_size"], "peer_id": p["peer_id"]}
                 for i, p in enumerate(plan["peers"][:plan["n"]])]
        await self.call("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})
        await self.call("POST", f"/v1/packs/{pack}/commit", {
            **{k: plan[k] for k in ("k", "n", "repair", "success")},
            "length": PACK, "fragments": frags})
        return frags


@contextlib.asynccontextmanager
async def coordinator(tmp: Path) -> AsyncIterator[tuple[str, Coordinator]]:
    app = make_app(tmp / "c.db", ONLINE_WINDOW, run_jobs=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app[COORD]
    finally:
        await runner.cleanup()


async def go_quiet(coord: Coordinator, peer_id: str) -> None:
    """The peer's last heartbeat falls out of the online window."""
    async with coord.db.transaction() as conn:
        await conn.execute("UPDATE peers SET last_seen = ? WHERE id = ?",
                           (now() - ONLINE_WINDOW - 10, peer_id))


def test_restore_asks_online_holders_first_then_the_lowest_balances(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with coordinator(tmp_path) as (url, coord), aiohttp.ClientSession() as http:
            members = [Member(http, url, f"user{i}") for i in range(PEERS)]
            ids = [await m.join(i) for i, m in enumerate(members)]
            await store.set_availability(coord.db, dict.fromkeys(ids, 0.9), 0)
            owner_of = dict(zip(ids, (m.name for m in members), strict=True))
            frags = await members[0].back_up(fid("pack"))
            holders = [f["peer_id"] for f in frags]
            assert len(holders) >= 4
            # balances fall with the index: the lowest belong to the last fragments
            money = {p: 1_000 * (len(holders) - i) * (-1) ** i for i, p in enumerate(holders)}
            for p, amount in money.items():
                await bank.book(coord.db, kind="upkeep", postings=[
                    Posting(user_account(owner_of[p]), amount), Posting(BANK, -amount)])
            lowest = sorted(holders, key=money.__getitem__)
            quiet = {lowest[0], lowest[2]}  # the lowest balance among them
            for p in quiet:
                await go_quiet(coord, p)

            for _ in range(3):  # the same order every time: no ties to break at random
                got = await members[0].call("GET", f"/v1/packs/{fid('pack')}")
                listed = [f["peer_id"] for f in got["fragments"]]
                assert sorted(listed) == sorted(holders)
                assert [f["online"] for f in got["fragments"]] == \
                    [p not in quiet for p in listed]
                assert listed == [p for p in lowest if p not in quiet] + \
                    [p for p in lowest if p in quiet]
                assert listed != holders and listed != lowest  # neither index nor balance alone
                by_index = {f["index"]: f["fragment_id"] for f in frags}
                assert all(by_index[f["index"]] == f["fragment_id"]
                           for f in got["fragments"])

    asyncio.run(scenario())
