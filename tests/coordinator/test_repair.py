"""The repair checker, task leases and dispatch, store grants and placement moves."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.coordinator import checker, repair
from p2pbak.coordinator.service import Coordinator
from p2pbak.net import tickets
from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now
from p2pbak.store.db.packs import Fragment
from p2pbak.store.db.peers import PeerState
from tests.support import postgres
from tests.support.repair import ONLINE_WINDOW, SETTINGS, World, age_tasks, fid, world

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def handed_out(w: World, worker: str, offline: Sequence[str] = ()
                     ) -> tuple[int, dict[str, Any], store.Task]:
    """Pack "p" (k=2, n=5) on peers 1-5 whose first holder departed (and `offline` went
    quiet); its repair task, past the dispatch grace, handed to `worker`."""
    p = w.peers
    pk = await w.add_pack("p", p[1:6], k=2, n=5)
    await w.set_seen(p[1], now() - SETTINGS.departure_timeout - 10)
    for peer in offline:
        await w.set_seen(peer, now() - ONLINE_WINDOW - 10)  # offline, not departed
    await checker.checker_job(w.coord)
    await age_tasks(w, repair.DISPATCH_GRACE + 1)
    payload = await repair.next_task(w.coord, worker)
    assert payload is not None
    task = await store.get_task(w.db, payload["task_id"])
    assert task is not None
    return pk, payload, task


health = st.builds(
    lambda pk, k, extra, healthy, moving: store.PackHealth(
        pk, k, k + extra, k + extra, min(healthy, k + extra), moving),
    st.integers(1, 10**6), st.integers(1, 30), st.integers(0, 30), st.integers(0, 60),
    st.integers(0, 3))


@given(st.lists(health, max_size=40, unique_by=lambda p: p.pk))
def test_checker_queues_exactly_the_packs_below_threshold_most_endangered_first(
        packs: list[store.PackHealth]) -> None:
    planned = checker.plan_repairs(packs)
    due = {p.pk for p in packs if p.healthy < p.repair or p.moving}
    assert {pk for pk, _ in planned} == due
    prios = [prio for _, prio in planned]
    assert prios == sorted(prios)
    by_pk = {p.pk: p for p in packs}
    assert all(prio == by_pk[pk].healthy - by_pk[pk].k for pk, prio in planned)


def test_checker_counts_departed_disqualified_and_leaving_holders_as_gone(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            p = w.peers
            a = await w.add_pack("a", p[1:6], k=2, n=5)
            b = await w.add_pack("b", p[3:8], k=2, n=5)
            c = await w.add_pack("c", p[2:7], k=2, n=5)
            await w.set_seen(p[1], now() - SETTINGS.departure_timeout - 10)
            await w.set_seen(p[2], now(), PeerState.DISQUALIFIED)
            await w.set_seen(p[7], now(), PeerState.LEAVING)
            assert await checker.checker_job(w.coord) == 3
            assert await checker.checker_job(w.coord) == 0  # one open repair per pack
            queue = await store.queued(w.db, 10)
            # a keeps 3 (k+1), c keeps 4, b keeps 4 and moves one off a leaving peer
            assert [t.pack_pk for t in queue] == [a, b, c]
            assert [t.priority for t in queue] == [1, 2, 2]
            healthy = {h.pk: h.healthy for h in await store.pack_health(
                w.db, now() - SETTINGS.departure_timeout)}
            assert healthy == {a: 3, b: 4, c: 4}

    run(scenario())


def test_lapsed_lease_is_requeued_after_a_coordinator_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 6) as w:
            pk = await w.add_pack("p", w.peers[1:6], k=2, n=5)
            await store.queue_repairs(w.db, [(pk, 0)])
            t = now()
            (task,) = await store.queued(w.db, 5)
            assert await store.lease(w.db, task.id, w.peers[0], 10, t)
            assert not await store.lease(w.db, task.id, w.peers[1], 10, t)
        coord = await Coordinator.start(postgres.CURRENT.database(tmp_path, "coordinator.db"),
                                        ONLINE_WINDOW,
                                        run_jobs=False)
        try:
            assert await store.requeue_expired(coord.db, 5, t + 5) == 0
            again = await store.get_task(coord.db, task.id)
            assert again is not None and again.state == store.LEASED
            assert await store.requeue_expired(coord.db, 5, t + 11) == 1
            again = await store.get_task(coord.db, task.id)
            assert again is not None and again.state == store.QUEUED
            assert again.worker is None and again.attempts == 1
            for i in range(2, 6):  # lease after lease lapses: given up at the limit
                assert await store.lease(coord.db, task.id, "w", 1, t + 20 * i)
                await store.requeue_expired(coord.db, 5, t + 20 * i + 5)
            final = await store.get_task(coord.db, task.id)
            assert final is not None and final.state == store.FAILED
        finally:
            await coord.stop()

    run(scenario())


def test_repair_goes_to_one_idle_non_holder_with_tickets_for_live_sources(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 9) as w:
            p = w.peers
            pk = await w.add_pack("p", p[1:6], k=2, n=5)
            await w.set_seen(p[1], now() - SETTINGS.departure_timeout - 10)
            await checker.checker_job(w.coord)
            for holder in p[2:6]:
                assert await repair.next_task(w.coord, holder) is None
            assert await repair.next_task(w.coord, p[0]) is None  # the owner
            takers = [q for q in p[6:9] if await repair.next_task(w.coord, q) is not None]
            assert len(takers) == 1, "work allocation names one worker while fresh"
            (task_id,) = [r[0] for r in await w.db.all("SELECT id FROM tasks")]
            task = await store.get_task(w.db, task_id)
            assert task is not None and task.state == store.LEASED
            assert task.worker == takers[0] and task.pack_pk == pk

    run(scenario())


def test_repair_payload_grants_and_one_transaction_move(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 9) as w:
            p = w.peers
            worker = p[7]
            pk, payload, task = await handed_out(w, worker, offline=[p[2]])
            assert payload["kind"] == "repair"
            assert payload["missing"] == [0]  # index 0 sat on the departed peer
            assert payload["k"] == 2 and payload["n"] == 5
            key = tickets.load_public_key(w.coord.ticket_key)
            sources = payload["sources"]
            assert {s["peer_id"] for s in sources} == set(p[3:6])  # online holders only
            for s in sources:
                t = tickets.verify(key, s["ticket"], op="fetch", fragment=s["fragment_id"],
                                   to=s["peer_id"])
                assert t.from_ == worker
            info = await store.pack_info(w.db, pk)
            holders = await store.holders(w.db, pk)
            assert info is not None
            size = holders[0].size
            assert repair.check_fragments(info, holders, [(0, fid("other"), size)])
            assert repair.check_fragments(info, holders, [(0, fid("p/0"), size + 1)])
            assert repair.check_fragments(info, holders, [(5, fid("x"), size)])
            assert repair.check_fragments(info, holders, [(0, fid("p/0"), size)]) is None
            (target,) = await repair.grant_stores(w.coord, task, worker,
                                                  [(0, fid("p/0"), size)], set())
            assert target["peer_id"] not in p[0:6]  # not a holder, not the owner
            tickets.verify(key, target["ticket"], op="store", fragment=fid("p/0"),
                           to=target["peer_id"])
            forged = Fragment(1, fid("p/1"), size, p[8] if target["peer_id"] != p[8] else p[6])
            good = Fragment(0, fid("p/0"), size, target["peer_id"])
            assert await repair.complete(w.coord, task, "someone else", [good]) == []
            moved = await repair.complete(w.coord, task, worker, [good, forged])
            assert moved == [good]
            placed = {h.index: h.peer_id for h in await store.holders(w.db, pk)}
            assert placed[0] == target["peer_id"] and placed[1] == p[2]
            dropped = await w.db.all("SELECT peer_id, fragment_id FROM deletions")
            assert [tuple(r) for r in dropped] == [(p[1], fid("p/0"))]  # the departed copy
            done = await store.get_task(w.db, task.id)
            assert done is not None and done.state == store.DONE
            assert await checker.checker_job(w.coord) == 0  # back at total

    run(scenario())


def test_no_supplier_left_is_a_clear_refusal(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 7) as w:
            p = w.peers
            _, _, task = await handed_out(w, p[6])
            size = (await store.holders(w.db, task.pack_pk or 0))[0].size
            try:
                await repair.grant_stores(w.coord, task, p[6], [(0, fid("p/0"), size)], {p[6]})
            except repair.NoSupplier as exc:
                assert "no online peer" in str(exc)
            else:
                raise AssertionError("a store was granted with no eligible supplier")

    run(scenario())


def test_failed_repair_backs_off_and_a_silent_worker_loses_its_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            p = w.peers
            _, _, task = await handed_out(w, p[6])
            await repair.retry_later(w.coord, task, "no supplier")
            again = await store.get_task(w.db, task.id)
            assert again is not None and again.state == store.QUEUED
            assert again.attempts == 1 and again.not_before >= now() + 4
            assert await repair.next_task(w.coord, p[7]) is None  # not yet due
            async with w.db.transaction() as conn:
                await conn.execute("UPDATE tasks SET not_before = 0")
            assert await repair.next_task(w.coord, p[7]) is not None
            await w.set_seen(p[7], now() - ONLINE_WINDOW - 1)  # the worker went silent
            await checker.checker_job(w.coord)
            back = await store.get_task(w.db, task.id)
            assert back is not None and back.state == store.QUEUED and back.worker is None

    run(scenario())
