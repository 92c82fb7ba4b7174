"""The peer's receipt book against a real coordinator (aiohttp app on loopback): receipts
survive a restart on disk, are paid once, and stay queued while the coordinator is away."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from p2pbak.coordinator.http.app import make_app
from p2pbak.coordinator.http.common import COORD
from p2pbak.localgrid.grid import free_port
from p2pbak.net.api import CoordinatorClient
from p2pbak.net.tickets import Ticket
from p2pbak.peer.receipts import ReceiptBook
from p2pbak.store.db import bank
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db.bank import user_account


async def _register(url: str) -> CoordinatorClient:
    """A user with a machine whose peer is announced, through the real routes."""
    import base64
    import os

    setup = CoordinatorClient(url)
    try:
        made = await setup.create_user("bob", salt=os.urandom(16), login_key=os.urandom(32),
                                       keyfile=base64.b64encode(b"k"), machine="m")
    finally:
        await setup.close()
    return CoordinatorClient(url, machine_id=made["machine_id"], secret=made["secret"])


def _ticket(op: str) -> Ticket:
    return Ticket(op=op, fragment="ab" * 32, size=1, from_="x", to="y", exp=0, id="i")


def test_receipts_wait_on_disk_and_are_paid_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tmp_path / "c.db", run_jobs=False)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        coord = app[COORD]
        client = await _register(url)
        try:
            await coordinator_peers.announce(coord.db, peer_id=client.machine_id,
                                             url="http://127.0.0.1:1", subnet="s", space=None,
                                             upload=None, download=None)
            # fetches of nobody's fragments (upkeep, paid by the bank) bob received himself
            wires = [coord.ticket(op="fetch", fragment=f"{i:064x}", size=10**8,
                                  from_=client.machine_id, to=client.machine_id)
                     for i in range(3)]
            book = ReceiptBook(tmp_path / "receipts.txt")
            for w in wires:
                book.served(_ticket("fetch"), w)
            book.served(_ticket("delete"), "not-paid")  # moves no data: not kept
            again = ReceiptBook(tmp_path / "receipts.txt")  # an agent restart
            assert again.pending == wires
            away = ReceiptBook(tmp_path / "other.txt", pending=list(wires))
            gone = CoordinatorClient("http://127.0.0.1:9", machine_id="a", secret="b")
            assert await away.flush(gone) == 0 and away.pending == wires  # kept for later
            await gone.close()
            # handed in before the receiver acknowledged: kept as claims, nothing paid yet
            assert await again.flush(client) == 0 and again.pending == []
            assert await bank.balance(coord.db, user_account("bob")) == 0
            answer = await client.acks(wires)  # the receiver's word pays the waiting claims
            paid = answer["paid"]
            assert answer["acknowledged"] == 3 and paid > 0
            assert (tmp_path / "receipts.txt").read_text() == ""
            assert await bank.balance(coord.db, user_account("bob")) == paid
            assert await away.flush(client) == 0  # the same tickets again: nothing more
            assert await bank.balance(coord.db, user_account("bob")) == paid
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(scenario())
