"""Availability estimates from heartbeat samples and test transfers (paper §2.5, op. 5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.coordinator import availability
from p2pbak.coordinator.availability import PRIOR, PRIOR_WEIGHT, estimate
from p2pbak.net import probes
from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now
from p2pbak.store.db.peers import PeerState
from tests.support.repair import ONLINE_WINDOW, world

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends

YEAR = 365 * 86400

evidence = st.tuples(st.floats(0, 1), st.floats(0, 10 * YEAR)).map(
    lambda t: (t[0] * t[1], t[1]))  # (up, observed), up <= observed


@given(evidence)
def test_estimate_stays_strictly_between_0_and_1(ev: tuple[float, float]) -> None:
    assert 0.0 < estimate(*ev) < 1.0


@given(evidence)
def test_estimate_lies_between_the_prior_and_the_observed_uptime(
        ev: tuple[float, float]) -> None:
    up, seen = ev
    a = estimate(up, seen)
    if seen == 0:
        assert a == PRIOR
        return
    rate = up / seen
    lo, hi = sorted((PRIOR, rate))
    assert lo - 1e-12 <= a <= hi + 1e-12


@given(st.floats(0, 1), st.floats(3600, YEAR))
def test_more_evidence_moves_closer_to_the_observed_uptime(rate: float,
                                                           seen: float) -> None:
    near = abs(estimate(rate * 2 * seen, 2 * seen) - rate)
    far = abs(estimate(rate * seen, seen) - rate)
    assert near <= far + 1e-12
    if abs(rate - PRIOR) > 0.01:
        assert near < far


@given(st.floats(0, 1), st.floats(0, 3600))
def test_the_prior_dominates_with_little_evidence(rate: float, seen: float) -> None:
    assert abs(estimate(rate * seen, seen) - PRIOR) < 0.01


def test_never_online_or_always_online_for_a_week_stays_inside() -> None:
    week = 7 * 86400
    low, high = estimate(0, week), estimate(week, week)
    assert 0.1 < low < PRIOR < high < 0.9
    assert low == PRIOR * PRIOR_WEIGHT / (PRIOR_WEIGHT + week)


def test_samples_move_online_peers_up_and_silent_peers_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 3) as w:
            up, down, fresh = w.peers
            t = now()
            await w.set_seen(down, t - ONLINE_WINDOW - 5)
            for _ in range(50):
                await availability.sample(w.coord, t)
            estimates = await availability.refresh(w.coord, t)
            assert estimates[up] > PRIOR > estimates[down]
            assert estimates[up] - PRIOR == PRIOR - estimates[down]
            peers = {r[0]: r[1] for r in await w.db.all("SELECT id, availability FROM peers")}
            assert peers[up] == estimates[up] and peers[fresh] == estimates[fresh]
            # a week later the old samples are out of the window: back to the prior
            later = await availability.refresh(w.coord, t + w.coord.repair.availability_window
                                               + 1)
            assert later == {}
            assert await w.db.scalar("SELECT count(*) FROM availability_samples") == 0

    asyncio.run(scenario())


def test_little_known_peers_get_a_test_store_then_a_later_fetch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 3) as w:
            assert await availability.schedule_tests(w.coord) == 3
            assert await availability.schedule_tests(w.coord) == 0  # one open per peer
            task = (await store.queued(w.db, 10))[0]
            assert task.kind == store.TEST_STORE and task.seed is not None
            data = probes.test_fragment(task.seed, task.size or 0)
            import blake3

            assert blake3.blake3(data).hexdigest() == task.fragment_id
            assert await store.lease(w.db, task.id, w.peers[2], 60)
            await store.finish(w.db, task.id, store.DONE, {})
            await availability.test_result(w.coord, task, store.OK_OUTCOME)
            fetches = [t for t in await store.queued(w.db, 10, now() + 3600)
                       if t.kind == store.TEST_FETCH]
            assert [t.target for t in fetches] == [task.target]
            assert fetches[0].not_before >= now() + availability.TEST_HOLD - 1
            assert fetches[0].fragment_id == task.fragment_id
            fetch = fetches[0]
            await availability.test_result(w.coord, fetch, store.OFFLINE_OUTCOME)
            rows = await w.db.all("SELECT peer_id, fragment_id FROM deletions")
            assert [tuple(r) for r in rows] == [(task.target, task.fragment_id)]
            found = await store.evidence(w.db, 0)
            assert found[task.target or ""] == (availability.TEST_EVIDENCE,
                                                2 * availability.TEST_EVIDENCE)

    asyncio.run(scenario())


def test_a_test_fragment_on_a_peer_that_leaves_goes_on_its_delete_list(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        from p2pbak.coordinator import checker

        async with world(tmp_path, 3) as w:
            target = w.peers[1]
            await store.add_checks(w.db, store.TEST_FETCH, [
                {"target": target, "fragment_id": "ab" * 32, "size": 64, "seed": b"s"}])
            await store.add_checks(w.db, store.AUDIT, [
                {"target": w.peers[2], "fragment_id": "cd" * 32, "size": 64}])
            await checker.checker_job(w.coord)
            assert len(await store.queued(w.db, 10, now() + 10)) == 2  # both still wanted
            await w.set_seen(target, now(), PeerState.LEAVING)
            await checker.checker_job(w.coord)
            (left,) = await store.queued(w.db, 10, now() + 10)
            assert left.target == w.peers[2]
            rows = await w.db.all("SELECT peer_id, fragment_id, size FROM deletions")
            assert [tuple(r) for r in rows] == [(target, "ab" * 32, 64)]

    asyncio.run(scenario())
