"""Delete lists and graceful exit against a real `p2pbak serve` (peers spoken for over HTTP).

What goes on a supplier's delete list: fragments granted but left out of a commit, every
fragment of a dropped pack, fragments stored under store tickets that expired uncommitted;
never a fragment placed on that peer. Each comes with a delete ticket only the coordinator
could sign; the peer agent deletes under it and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak.config import Supply
from p2pbak.datapath.erasure import fragment_id
from p2pbak.net import tickets
from p2pbak.peer.deletes import DeleteList
from p2pbak.peer.server import PeerState
from p2pbak.store.db import garbage
from p2pbak.store.db.database import Database
from p2pbak.store.fragments import FragmentStore
from tests.test_coordinator_support import (
    PACK_SIZE,
    Api,
    Server,
    coordinator,
    fid,
    fragments,
    grid,
    store_pack,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[Api]]]:
    with coordinator(tmp_path_factory.mktemp("lists")) as server:
        yield server, grid(server.api, "peer", 8)


def deletes(peer: Api, done: list[str] | None = None) -> list[dict[str, Any]]:
    return list(peer.ok("POST", "/v1/garbage", {"done": done or []})["deletes"])


def lists(peers: list[Api]) -> dict[str, set[str]]:
    return {p.machine_id: {d["fragment_id"] for d in deletes(p)} for p in peers}


def confirm_all(peers: list[Api]) -> None:
    for p in peers:
        deletes(p, [d["fragment_id"] for d in deletes(p)])
        assert deletes(p) == []


def test_fragments_granted_but_not_committed_are_garbage(
        world: tuple[Server, list[Api]]) -> None:
    server, peers = world
    owner = peers[0]
    key = tickets.load_public_key(server.api.ok("GET", "/v1/health")["ticket_key"])
    pack = fid("tail")
    made = store_pack(owner, pack, stored=None)
    success = made["plan"]["success"]
    confirm_all(peers)
    pack2 = fid("tail2")
    made = store_pack(owner, pack2, stored=success)
    left_out = made["all"][success:]
    by_peer = {p.machine_id: p for p in peers}
    for f in left_out:
        got = deletes(by_peer[f["peer_id"]])
        assert [d["fragment_id"] for d in got] == [f["fragment_id"]]
        t = tickets.verify(key, got[0]["ticket"], op="delete", fragment=f["fragment_id"],
                           to=f["peer_id"])
        assert t.size == f["size"]
    for f in made["kept"]:
        assert deletes(by_peer[f["peer_id"]]) == []
    confirm_all(peers)


def test_a_dropped_pack_goes_on_its_holders_lists(world: tuple[Server, list[Api]]) -> None:
    _, peers = world
    owner, stranger = peers[0], peers[1]
    pack = fid("dropped")
    made = store_pack(owner, pack)
    assert pack in {p["id"] for p in owner.ok("GET", "/v1/packs")["packs"]}
    other = stranger.ok("POST", "/v1/packs/drop", {"pack_ids": [pack]})
    assert other["packs"] == 0  # another user's pack id is simply not theirs
    dropped = owner.ok("POST", "/v1/packs/drop", {"pack_ids": [pack, fid("unknown")]})
    assert dropped["packs"] == 1 and dropped["bytes"] == PACK_SIZE
    assert dropped["fragments"] == len(made["kept"])
    assert dropped["fragment_bytes"] == sum(f["size"] for f in made["kept"])
    assert pack not in {p["id"] for p in owner.ok("GET", "/v1/packs")["packs"]}
    assert owner.call("GET", f"/v1/packs/{pack}").status == 404
    want: dict[str, set[str]] = {p.machine_id: set() for p in peers}
    for f in made["kept"]:
        want[f["peer_id"]].add(f["fragment_id"])
    assert lists(peers) == want
    confirm_all(peers)


def test_placements_count_fragments_on_known_peers(world: tuple[Server, list[Api]]) -> None:
    _, peers = world
    owner = peers[2]
    pack = fid("placed")
    made = store_pack(owner, pack)
    got = owner.ok("POST", "/v1/packs/placements", {"pack_ids": [pack, fid("nope")]})["packs"]
    assert [(p["id"], p["placed"], p["online"]) for p in got] == [
        (pack, len(made["kept"]), len(made["kept"]))]
    assert peers[3].ok("POST", "/v1/packs/placements", {"pack_ids": [pack]})["packs"] == []


def test_expired_store_tickets_become_deletions_but_never_a_placed_fragment(
        world: tuple[Server, list[Api]]) -> None:
    server, peers = world
    owner = peers[3]
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    crashed = fid("crashed")
    frags = fragments(plan, crashed)
    owner.ok("POST", f"/v1/packs/{crashed}/tickets", {"fragments": frags})  # never committed
    placed = store_pack(owner, fid("placed-later"))["kept"][0]

    async def expire() -> int:
        db = await Database.open(server.db, migrate=False)
        try:  # as the sweep job would, once the grants' time is up
            queued = await garbage.expire_grants(db, int(time.time()) + 10**6)
            async with db.transaction() as conn:  # a stale row for a placed fragment
                await conn.execute("INSERT INTO deletions VALUES (?, ?, ?, 0)",
                                   (placed["peer_id"], placed["fragment_id"], placed["size"]))
            return queued
        finally:
            await db.close()

    assert asyncio.run(expire()) == len(frags)
    got = lists(peers)
    assert set().union(*got.values()) == {f["fragment_id"] for f in frags}
    assert placed["fragment_id"] not in got[placed["peer_id"]]
    confirm_all(peers)


def test_leave_stops_placement_and_reports_what_is_left(
        world: tuple[Server, list[Api]]) -> None:
    _, peers = world
    owner = peers[4]
    made = store_pack(owner, fid("before-leave"))
    leaver_id = made["kept"][0]["peer_id"]
    leaver = next(p for p in peers if p.machine_id == leaver_id)
    assert leaver.ok("GET", "/v1/supply/leave")["state"] == "active"
    first = leaver.ok("POST", "/v1/supply/leave", {})
    held = owner.ok("GET", "/v1/packs")["packs"]
    assert first["state"] == "leaving" and first["fragments"] >= 1 and held
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    assert leaver_id not in {p["peer_id"] for p in plan["peers"]}
    leaver.heartbeat("http://127.0.0.9:9999")  # a heartbeat does not undo leaving
    assert leaver.ok("GET", "/v1/supply/leave")["state"] == "leaving"
    bad = leaver.call("POST", "/v1/supply/leave", {"now": True})
    assert bad.status == 400 and "unknown field" in bad.error


def test_the_agent_deletes_only_under_a_coordinator_ticket(tmp_path: Path) -> None:
    key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    store = FragmentStore(tmp_path).open()
    try:
        state = PeerState(store, "peer-a", key.public_key(), Supply())
        ctx: Any = SimpleNamespace(state=state)
        data = b"fragment bytes" * 100
        f = fragment_id(data)
        store.put(f, data)
        hook = DeleteList()

        def entry(signer: Ed25519PrivateKey, to: str = "peer-a", op: str = "delete") -> dict:
            return {"fragment_id": f, "ticket": tickets.issue(
                signer, op=op, fragment=f, size=len(data), from_="coordinator", to=to)}

        for bad in (entry(forger), entry(key, to="peer-b"), entry(key, op="fetch")):
            assert not asyncio.run(hook._delete(ctx, bad))
            assert store.has(f)
        good = entry(key)
        assert asyncio.run(hook._delete(ctx, good))
        assert not store.has(f) and store.stored_bytes == 0
        assert hook.deleted == 1 and hook.freed == len(data)
        assert asyncio.run(hook._delete(ctx, good))  # a replay: already done, confirm again
        assert hook.deleted == 1
    finally:
        store.close()


def test_repository_locks_keep_prune_and_other_machines_backups_apart(
        world: tuple[Server, list[Api]]) -> None:
    server, _ = world
    laptop = server.api.register("lockuser", login_key=b"L" * 32, machine="laptop")
    body = server.api.ok("POST", "/v1/users/lockuser/machines",
                         {"login_key": base64.b64encode(b"L" * 32).decode(), "machine": "nas"})
    nas = server.api.as_(f"{body['machine_id']}.{body['secret']}")
    stranger = server.api.register("lockstranger")
    shared, exclusive = {"exclusive": False, "ttl": 60}, {"exclusive": True, "ttl": 60}
    laptop.ok("POST", "/v1/lock", shared)  # a backup on the laptop
    nas.ok("POST", "/v1/lock", shared)  # and one on the nas: both may run
    laptop.ok("DELETE", "/v1/lock")
    r = laptop.call("POST", "/v1/lock", exclusive)  # prune waits for the nas's backup
    assert r.status == 409 and "'nas'" in r.error and "backs up" in r.error
    stranger.ok("POST", "/v1/lock", exclusive)  # another user's repository is another one
    nas.ok("DELETE", "/v1/lock")
    laptop.ok("POST", "/v1/lock", exclusive)
    laptop.ok("POST", "/v1/lock", exclusive)  # renewing one's own lock
    r = nas.call("POST", "/v1/lock", shared)
    assert r.status == 409 and "'laptop'" in r.error and "prunes" in r.error

    async def lapse() -> None:  # the laptop died holding it: its lock runs out
        db = await Database.open(server.db, migrate=False)
        try:
            async with db.transaction() as conn:
                await conn.execute("UPDATE repo_locks SET expires = 0")
        finally:
            await db.close()

    asyncio.run(lapse())
    nas.ok("POST", "/v1/lock", shared)
    for bad in ({"exclusive": True}, {"exclusive": "yes", "ttl": 60},
                {"exclusive": True, "ttl": 5}):
        assert nas.call("POST", "/v1/lock", bad).status == 400
