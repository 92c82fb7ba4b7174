"""The coordinator's own evidence (coordinator/proof_audit.py) against a real peer app.

A real coordinator database and a real fragment server (the peer agent's aiohttp app over a
real FragmentStore, on loopback, trusting the coordinator's ticket key): a holder with the
fragment passes by Merkle proof; a wrong root sent by the consumer is found out by the whole
fragment and dropped, not blamed on the holder; a holder without it fails; an unreachable
one is offline. A worker's forged proof never passes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import blake3
from aiohttp import web

from p2pbak.coordinator import proof_audit
from p2pbak.coordinator.service import Coordinator
from p2pbak.localgrid.grid import free_port
from p2pbak.net import proofs, tickets
from p2pbak.peer.server import make_app
from p2pbak.store.db import claims
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import tasks as store
from p2pbak.store.fragments import FragmentStore
from tests.coordinator.test_bank import USERS, machine_id, opened_coord

DATA = os.urandom(5 * proofs.LEAF + 123)
FID = blake3.blake3(DATA).hexdigest()
HOLDER = 1


@asynccontextmanager
async def peer(coord: Coordinator, tmp: Path) -> AsyncIterator[str]:
    """The holder's fragment server, its url recorded for the holder's peer row."""
    store = FragmentStore(tmp / "storage").open()
    app = make_app(store, peer_id=machine_id(HOLDER), ticket_key=coord.signing_key.public_key())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    async with coord.db.transaction() as conn:
        await conn.execute("UPDATE peers SET url = ? WHERE id = ?", (url, machine_id(HOLDER)))
    try:
        yield url
    finally:
        await runner.cleanup()
        store.close()


async def put(coord: Coordinator, url: str) -> None:
    wire = coord.ticket(op="store", fragment=FID, size=len(DATA), from_=machine_id(0),
                        to=machine_id(HOLDER))
    async with aiohttp.ClientSession() as http, http.put(
            f"{url}/v1/fragments/{FID}", data=DATA, headers={tickets.HEADER: wire}) as r:
        assert r.status == 201


async def commit(coord: Coordinator, root: str | None) -> None:
    frag = coordinator_packs.Fragment(0, FID, len(DATA), machine_id(HOLDER), root)
    pack_id = "77" * 32
    await coordinator_packs.add_grants(coord.db, USERS[0], pack_id, [frag], 2**40)
    await coordinator_packs.commit(coord.db, USERS[0], machine_id(0), coordinator_packs.Pack(
        pack_id, 1, 1, 1, 1, len(DATA), 0, (frag,)))


def test_holder_passes_by_proof_and_a_wrong_root_is_not_its_fault(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_coord(tmp_path) as coord, peer(coord, tmp_path) as url:
            await put(coord, url)
            root = proofs.root(DATA)
            assert await proof_audit.direct_check(coord, machine_id(HOLDER), FID, len(DATA),
                                                  root) == proof_audit.OK
            bogus = proofs.root(DATA[:-1] + b"x")  # what a lying consumer would commit
            await commit(coord, bogus)
            assert await claims.fragment_root(coord.db, machine_id(HOLDER), FID) == bogus
            assert await proof_audit.direct_check(coord, machine_id(HOLDER), FID, len(DATA),
                                                  bogus) == proof_audit.OK
            assert await claims.fragment_root(coord.db, machine_id(HOLDER), FID) is None
            for f in (tmp_path / "storage" / "fragments").rglob(FID):
                f.unlink()  # the holder deletes it
            assert await proof_audit.direct_check(coord, machine_id(HOLDER), FID, len(DATA),
                                                  root) == proof_audit.FAILED
        async with opened_coord(tmp_path / "2") as coord:  # nobody listening at its url
            assert await proof_audit.direct_check(coord, machine_id(HOLDER), FID, len(DATA),
                                                  None) == proof_audit.OFFLINE

    (tmp_path / "2").mkdir()
    asyncio.run(scenario())


def test_a_forged_answer_never_passes_and_the_worker_is_blamed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_coord(tmp_path) as coord, peer(coord, tmp_path) as url:
            await put(coord, url)
            await commit(coord, proofs.root(DATA))
            await store.add_checks(coord.db, store.AUDIT, [{
                "target": machine_id(HOLDER), "fragment_id": FID, "size": len(DATA)}])
            (task,) = [t for t in await store.queued(coord.db, 10) if t.kind == store.AUDIT]
            ch = proof_audit.challenge(coord, task)
            honest = [p.to_dict() for p in proofs.prove(DATA, ch["indices"])]
            forged = [proofs.Proof(i, bytes(len(p["block"]) * 3 // 4), ()).to_dict()
                      for i, p in zip(ch["indices"], honest, strict=True)]
            worker = machine_id(2)
            good = await proof_audit.judge_audit(coord, task, worker, "ok", honest)
            assert good == proof_audit.Verdict("ok", True, "proof")
            bad = await proof_audit.judge_audit(coord, task, worker, "ok", forged)
            assert bad.target == "ok" and not bad.worker_honest and bad.verified == "own"
            lie = await proof_audit.judge_audit(coord, task, worker, "failed", None)
            assert lie.target == "ok" and not lie.worker_honest

    asyncio.run(scenario())
