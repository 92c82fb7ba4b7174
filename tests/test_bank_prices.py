"""The price job on a real coordinator database: history rows, g(p) from the measured S and
d, the update's direction, its state carried from row to row, prices kept in bounds."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

from p2pbak.coordinator import prices as job
from p2pbak.coordinator.service import Coordinator
from p2pbak.market.equilibrium import g, h
from p2pbak.market.resources import Resources
from p2pbak.market.update import Params
from p2pbak.store.db import bank
from p2pbak.store.db import peers as coordinator_peers
from tests.test_bank import USERS, machine_id, open_coord, run, store_pack


async def _unanswered(coord: Coordinator, pack_id: str) -> None:
    """40 price intervals of a market whose caps and usage never change: one pack stored,
    every peer online, nothing answering the prices."""
    await _online(coord, len(USERS))
    await store_pack(coord, 0, pack_id, [1, 2], size=10**6)
    for _ in range(40):
        await job.price_job(coord)


async def _online(coord: object, n: int) -> None:
    for i in range(n):
        await coordinator_peers.heartbeat(coord.db, peer_id=machine_id(i),  # type: ignore[attr-defined]
                                          url=f"http://127.0.0.1:{9000 + i}",
                                          subnet="127.0.0.0/24", stored_bytes=0,
                                          free_bytes=10**11)


def test_price_job_measures_g_and_moves_prices_against_it() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp, price_interval=0)
        try:
            await _online(coord, len(USERS))
            first = await job.price_job(coord)
            assert first is not None and first.note == "initial prices" and first.g is None
            assert (first.p_upload, first.p_download) == (1.0, 1.0)
            held = await job.price_job(coord)  # nothing stored yet: no demand to read
            assert held is not None and held.g is None and "no demand" in held.note
            await store_pack(coord, 0, "ee" * 32, [1, 2, 3], size=10**9)
            row = await job.price_job(coord)
            assert row is not None and row.g is not None and row.note == ""
            supply = Resources.from_dict(row.supply)  # type: ignore[arg-type]
            demand = Resources.from_dict(row.demand)  # type: ignore[arg-type]
            assert row.g == g(supply, demand)
            hu, hd = h(supply, demand)
            # a resource in surplus (h > 0) gets cheaper, a scarce one dearer
            assert math.copysign(1, 1.0 - row.p_upload) == math.copysign(1, hu)
            assert math.copysign(1, 1.0 - row.p_download) == math.copysign(1, hd)
            again = await job.price_job(coord)  # same caps, same usage: no answer yet
            assert again is not None and again.note.startswith("held: no response")
            assert (again.p_upload, again.p_download) == (row.p_upload, row.p_download)
            history = await bank.price_history(coord.db)
            assert [r.id for r in history] == sorted(r.id for r in history)
            # the secant after the hold will span it: the state keeps the moved-from day
            assert history[-1].state["p"] == [1.0, 1.0]
            assert history[-1].state["hold"]["held"] == 1
        finally:
            await coord.stop()

    run(scenario)


def test_prices_stay_positive_and_bounded_whatever_the_gap() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp, price_interval=0)
        try:
            await _unanswered(coord, "ef" * 32)  # the gap never closes
            lo, hi = job.PRICE_BOUNDS
            for r in await bank.price_history(coord.db):
                assert lo <= r.p_upload <= hi and lo <= r.p_download <= hi
                assert r.prices["upload"] >= 0 and r.prices["space"] == 1_000_000
        finally:
            await coord.stop()

    run(scenario)


def test_no_new_row_before_the_interval_is_over() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp, price_interval=3600)
        try:
            assert await job.price_job(coord) is not None
            assert await job.price_job(coord) is None  # a restart adds no row either
            assert len(await bank.price_history(coord.db)) == 1
        finally:
            await coord.stop()

    run(scenario)


def test_quote_for_a_machine_never_seen_online_is_an_answer() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp)
        try:
            async with coord.db.transaction() as conn:
                await conn.execute("UPDATE peers SET availability = 0")
            q = await job.supply_quote(coord, "alice", machine_id(0), 10**10, 1000, 1000)
            assert q["available_bytes"] >= 0 and 0 < q["availability"] < 1e-3
            assert all(isinstance(v, int) for v in q["regions"].values())
            fresh = await job.supply_quote(coord, "nobody", "f" * 32, 10**10, 1000, 1000)
            assert fresh["availability"] == job.PRIOR_AVAILABILITY and not fresh["peer_known"]
            assert fresh["available_bytes"] > q["available_bytes"]
        finally:
            await coord.stop()

    run(scenario)


def test_a_market_that_never_answers_is_held_near_its_start() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp, price_interval=0)
        try:
            await _unanswered(coord, "fa" * 32)
            history = (await bank.price_history(coord.db))[1:]
            moves = sum((a.p_upload, a.p_download) != (b.p_upload, b.p_download)
                        for a, b in pairwise(history))
            assert moves <= 1 + 40 // (Params().max_hold + 1)
            assert sum(r.note.startswith("held: no response") for r in history) >= 30
            for r in history:  # the gap never closes, yet no walk to the bounds
                assert 0.5 - 1e-12 <= r.p_upload <= 2.0 + 1e-12
                assert 0.5 - 1e-12 <= r.p_download <= 2.0 + 1e-12
        finally:
            await coord.stop()

    run(scenario)
