"""Work allocation's moves on a real coordinator database (§2.4): once per price interval a
fragment held by an account well above 0 is flagged, the repair checker queues its pack, and
the repair rebuilds it on the account well below 0; flags nobody acted on are dropped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from p2pbak.coordinator import checker, moves, placement, repair
from p2pbak.market.bank import BANK, Posting
from p2pbak.store.db import bank, garbage, moving
from p2pbak.store.db import tasks as store
from p2pbak.store.db.bank import user_account
from p2pbak.store.db.packs import Fragment
from tests.support.repair import World, fid, world

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends

T0 = 1_900_000_000
PACKS = 5  # 25 fragments: a day's budget (5 % of the bytes) moves exactly one
MONEY = 70_000  # µc: want ∓10 000 µc/day over the 7-day horizon, far past one fragment's


class Clock:
    """time.time for every module at once, moved by hand."""

    def __init__(self) -> None:
        self.t = float(T0)

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "time", c)
    return c


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def give(w: World, user: str, amount: int) -> None:
    await bank.book(w.db, kind="upkeep", postings=[Posting(user_account(user), amount),
                                                   Posting(BANK, -amount)])


async def setup(w: World) -> list[int]:
    """Packs "pack0".. of user0 on peers 1-5 (k=2, n=5); user1 (peer 1, holding index 0 of
    each) well above 0, user7 (peer 7, holding nothing) well below; every estimate 0.9."""
    await store.set_availability(w.db, dict.fromkeys(w.peers, 0.9), 0)
    pks = [await w.add_pack(f"pack{i}", w.peers[1:6], k=2, n=5) for i in range(PACKS)]
    await give(w, "user1", MONEY)
    await give(w, "user7", -MONEY)
    return pks


async def next_interval(w: World, clock: Clock, offline: tuple[str, ...] = ()) -> None:
    """Past one price interval; every peer but `offline` reports in."""
    clock.t += w.coord.market.price_interval + 1
    for p in w.peers:
        if p not in offline:
            await w.beat(p)


async def flagged(w: World) -> list[tuple[int, int, str]]:
    rows = await w.db.all("SELECT pack_pk, idx, peer_id FROM fragments WHERE moving != 0"
                          " ORDER BY pack_pk, idx")
    return [(int(r[0]), int(r[1]), r[2]) for r in rows]


async def lease_repair(w: World) -> tuple[str, dict[str, Any]]:
    """The one peer work allocation hands the queued repair to, and its payload."""
    got = [(p, t) for p in w.peers if (t := await repair.next_task(w.coord, p)) is not None]
    assert len(got) == 1, got
    return got[0]


def test_a_fragment_moves_from_the_high_balance_to_the_low_balance(
        tmp_path: Path, clock: Clock) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            pks = await setup(w)
            high, low = w.peers[1], w.peers[7]
            assert await moves.move_job(w.coord) == 0  # the first run only starts its clock
            assert await flagged(w) == []
            await next_interval(w, clock)
            assert await moves.move_job(w.coord) == 1
            assert await flagged(w) == [(pks[0], 0, high)]  # the largest, first pack
            assert await moves.move_job(w.coord) == 0  # once per interval
            assert await checker.checker_job(w.coord) == 1

            worker, payload = await lease_repair(w)
            assert worker not in w.peers[:6]  # neither the owner nor a holder
            assert payload["missing"] == [0]
            assert high in {s["peer_id"] for s in payload["sources"]}  # still a source
            task = await store.get_task(w.db, payload["task_id"])
            assert task is not None
            size = placement.fragment_size(payload["length"], payload["k"])
            rebuilt = [(0, payload["fragment_ids"]["0"], size)]
            targets = await repair.grant_stores(w.coord, task, worker, rebuilt, set())
            assert [t["peer_id"] for t in targets] == [low]
            stored = [Fragment(0, fid("pack0/0"), size, low)]
            assert await repair.complete(w.coord, task, worker, stored) == stored

            placed = {h.index: (h.peer_id, h.moving) for h in await store.holders(w.db, pks[0])}
            assert placed == {0: (low, False), **{i: (w.peers[i + 1], False)
                                                  for i in range(1, 5)}}
            assert (fid("pack0/0"), size) in await garbage.pending(w.db, high, 100)
            assert await garbage.pending(w.db, low, 100) == []
            audit = await bank.audit(w.db)
            assert audit.ok and audit.sum == 0, audit
            assert await moves.move_job(w.coord) == 0  # still within the interval
            assert await flagged(w) == []
            assert await checker.checker_job(w.coord) == 0

    run(scenario())


@pytest.mark.parametrize("leased", [False, True])
def test_a_flag_whose_repair_was_never_leased_is_dropped_next_interval(
        tmp_path: Path, clock: Clock, leased: bool) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            pks = await setup(w)
            low = w.peers[7]
            await moves.move_job(w.coord)
            await next_interval(w, clock)
            assert await moves.move_job(w.coord) == 1
            assert await checker.checker_job(w.coord) == 1
            if leased:
                await lease_repair(w)
            # the only taker went away: the next plan finds nobody to move anything to
            await next_interval(w, clock, offline=(low,))
            assert await moves.move_job(w.coord) == 0
            kept = [(pks[0], 0, w.peers[1])] if leased else []
            assert await flagged(w) == kept  # a repair under way keeps its flag
            health = {h.pk: h.moving for h in await store.pack_health(w.db, 0)}
            assert health[pks[0]] == len(kept)

    run(scenario())


@pytest.mark.parametrize("holder_online", [True, False])
def test_the_worker_is_paid_for_what_its_lease_had_it_fetch(
        tmp_path: Path, clock: Clock, holder_online: bool) -> None:
    """A move whose holder is online is a copy (one download); with the holder offline
    the same move is a rebuild from k fragments, and the worker is paid for k."""
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            pks = await setup(w)
            high = w.peers[1]
            await next_interval(w, clock, offline=() if holder_online else (high,))
            assert await store.mark_moving(w.db, [(pks[0], 0)]) == 1
            assert await checker.checker_job(w.coord) >= 1
            worker, payload = await lease_repair(w)
            assert payload["copy"] is holder_online
            sources = {s["peer_id"] for s in payload["sources"]}
            assert (sources == {high}) is holder_online
            task = await store.get_task(w.db, payload["task_id"])
            assert task is not None
            size = placement.fragment_size(payload["length"], payload["k"])
            targets = await repair.grant_stores(
                w.coord, task, worker, [(0, payload["fragment_ids"]["0"], size)], set())
            stored = [Fragment(0, fid("pack0/0"), size, targets[0]["peer_id"])]
            assert await repair.complete(w.coord, task, worker, stored) == stored
            quantity = await w.db.scalar("SELECT quantity FROM transactions WHERE ref = ?",
                                         (f"task:{task.id}",))
            fetched = 1 if holder_online else payload["k"]
            assert quantity == size * (1 + fetched)

    run(scenario())


def test_receivers_read_a_few_at_a_time_give_the_same_plan(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Move planning reads the receivers a page at a time, lowest balance first, and
    reads more when plan_moves could have looked past the page: a page of one (the
    lowest balance, which holds every pack and so takes nothing) gives the plan that
    reading every peer gives."""
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            await store.set_availability(w.db, dict.fromkeys(w.peers, 0.9), 0)
            for i in range(PACKS):  # the lowest balance (peer 7) holds every pack
                await w.add_pack(f"pack{i}", [*w.peers[1:5], w.peers[7]], k=2, n=5)
            await give(w, "user1", MONEY)
            await give(w, "user7", -MONEY)
            await give(w, "user6", -MONEY // 2)  # the next lowest
            await next_interval(w, clock)
            interval = int(w.coord.market.price_interval)
            whole = await moves.plan(w.coord, interval)
            assert [to for _, to in whole] == [w.peers[6]]  # past peer 7, which holds it
            limits: list[int] = []
            real = moving.movers

            async def spy(*args: Any) -> Any:
                limits.append(args[-1])
                return await real(*args)

            monkeypatch.setattr(moving, "movers", spy)
            monkeypatch.setattr(moves, "RECEIVERS", 1)
            assert await moves.plan(w.coord, interval) == whole
            assert limits[:2] == [1, 4]  # one was not enough to be sure: it read more

    run(scenario())


def test_placements_name_only_the_holders_asked_about(tmp_path: Path) -> None:
    """A donor's placements come with each pack's holders among the peers asked about
    (the receivers read), and with none when none are asked about."""
    async def scenario() -> None:
        async with world(tmp_path, 8) as w:
            pks = await setup(w)
            donor = w.peers[1]
            rows, everyone = await store.placements_on(w.db, [donor], 500)
            assert sorted(r[0] for r in rows) == sorted(pks)
            assert set(everyone[pks[0]]) == set(w.peers[:6])  # the owner and the holders
            _, some = await store.placements_on(w.db, [donor], 500, [w.peers[2], w.peers[7]])
            assert some == {pk: {w.peers[2]} for pk in pks}
            assert (await store.placements_on(w.db, [donor], 500, []))[1] == {}

    run(scenario())
