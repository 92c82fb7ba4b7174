"""Availability estimates (paper §2.5 footnote) and testing (§2.3 operation 5).

Every sample period each peer is observed online (heartbeat within the online window) or
not; the estimate is the share of observed time online over a sliding window, blended with
a prior (the paper's 12 h/day) weighted like a few days of evidence, so a new peer starts
at 0.5 and no estimate reaches 0 or 1. Peers with little history get test transfers: a
peer stores a test fragment on them and later fetches it back; a test proves service, not
just heartbeats, so it counts as more evidence than one sample.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import blake3

from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.availability")

DAY = 86_400
PRIOR = 0.5  # the paper's 12 h/day for a peer nobody knows yet
PRIOR_WEIGHT = 3 * DAY  # the prior counts like three days of observation
TEST_EVIDENCE = 3600  # seconds of evidence one test transfer stands for
TEST_SIZE = 64 * 1024  # bytes of a test fragment
TEST_HOLD = 60  # seconds between storing a test fragment and fetching it back
WELL_KNOWN = DAY  # below this much observed time in the window, a peer gets tests
RETEST_AFTER = 3600  # seconds between two tests of one peer


def estimate(up_seconds: float, observed_seconds: float, prior: float = PRIOR,
             prior_weight: float = PRIOR_WEIGHT) -> float:
    """Share of time online, the prior counted as `prior_weight` seconds of evidence.

    A Beta-style posterior mean: (prior·w + up) / (w + observed). With w > 0 and
    0 < prior < 1 it stays strictly inside (0, 1) whatever the evidence.
    """
    if not 0 <= up_seconds <= observed_seconds:
        raise ValueError("need 0 <= up_seconds <= observed_seconds")
    return (prior * prior_weight + up_seconds) / (prior_weight + observed_seconds)


def sample_period(online_window: int) -> float:
    """How often peers are sampled: half the online window, at most every 5 minutes."""
    return max(1.0, min(300.0, online_window / 2))


def test_fragment(seed: bytes, size: int) -> bytes:
    """The bytes of a test fragment: both the coordinator and the tester derive them."""
    return blake3.blake3(seed).digest(length=size)


async def availability_job(coord: Coordinator) -> None:
    """Sample every peer, refresh the estimates, queue tests for little-known peers."""
    await sample(coord)
    await refresh(coord)
    await schedule_tests(coord)


async def sample(coord: Coordinator, t: int | None = None) -> None:
    at = now() if t is None else t
    from p2pbak.store.db import peers as coordinator_peers

    period = round(sample_period(coord.online_window))
    online = {p.id for p in await coordinator_peers.online(coord.db, coord.online_window)}
    peers = await store.sampled_peers(coord.db)
    await store.add_samples(coord.db, [(p, period, p in online, "heartbeat")
                                       for p, counted in peers if counted], at)


async def refresh(coord: Coordinator, t: int | None = None) -> dict[str, float]:
    """Recompute every sampled peer's estimate over the window; returns them."""
    at = now() if t is None else t
    since = at - coord.repair.availability_window
    found = await store.evidence(coord.db, since)
    estimates = {p: estimate(up, seen) for p, (up, seen) in found.items()}
    await store.set_availability(coord.db, estimates, since)
    return estimates


async def schedule_tests(coord: Coordinator) -> int:
    at = now()
    due = await store.test_due(coord.db, at - coord.online_window, WELL_KNOWN,
                               at - coord.repair.availability_window, RETEST_AFTER)
    checks = []
    for peer_id in due:
        seed = secrets.token_bytes(16)
        fid = blake3.blake3(test_fragment(seed, TEST_SIZE)).hexdigest()
        checks.append({"target": peer_id, "fragment_id": fid, "size": TEST_SIZE, "seed": seed})
    return await store.add_checks(coord.db, store.TEST_STORE, checks, at)


async def test_result(coord: Coordinator, task: store.Task, outcome: str) -> None:
    """A test transfer's outcome becomes evidence; a stored fragment is fetched later."""
    assert task.target is not None
    online = outcome == store.OK_OUTCOME
    await store.add_samples(coord.db, [(task.target, TEST_EVIDENCE, online, "test")])
    if outcome == store.FAILED_OUTCOME:
        log.info("peer %s failed a test transfer", task.target)
    if task.kind == store.TEST_FETCH and outcome == store.OFFLINE_OUTCOME:
        # unreachable, so the tester could not delete it: the peer will, from its list
        await store.queue_deletion(coord.db, task.target, task.fragment_id or "",
                                   task.size or 0)
    if task.kind == store.TEST_STORE and outcome == store.OK_OUTCOME:
        await store.add_checks(coord.db, store.TEST_FETCH, [{
            "target": task.target, "fragment_id": task.fragment_id, "size": task.size,
            "seed": task.seed, "not_before": now() + TEST_HOLD}])
