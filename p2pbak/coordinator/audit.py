"""Audits: a worker relays a storage challenge to a holder; the coordinator checks the proof.

The verdict is the coordinator's own (coordinator.proof_audit): a verified proof, or its own
challenge of the holder when the worker's report is anything else; a worker whose report
contradicts that evidence is recorded as failing an audit itself.

Outcomes feed a reputation score (the share of passed audits among the last
`REPUTATION_WINDOW` that reached the peer); a peer failing `FAIL_LIMIT` of its last
`RECENT` audits is disqualified, and the checker then repairs its fragments elsewhere. An
unreachable peer is offline, not failing: its availability estimate says so already.
Test transfers (operation 5) travel the same way; their results go to availability.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from p2pbak.coordinator import availability, billing, proof_audit
from p2pbak.store.db import claims
from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now
from p2pbak.store.db.peers import Peer

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.audit")

RECENT = 5
FAIL_LIMIT = 3  # failures among the last RECENT audits that disqualify
REPUTATION_WINDOW = 20
OUTCOMES = (store.OK_OUTCOME, store.FAILED_OUTCOME, store.OFFLINE_OUTCOME)


def judge(recent: list[str]) -> tuple[float, bool]:
    """(reputation, disqualify) from outcomes newest first (offline ones left out)."""
    window = recent[:REPUTATION_WINDOW]
    passed = sum(1 for o in window if o == store.OK_OUTCOME)
    reputation = passed / len(window) if window else 1.0
    failed = sum(1 for o in recent[:RECENT] if o == store.FAILED_OUTCOME)
    return reputation, failed >= FAIL_LIMIT


async def audit_job(coord: Coordinator) -> int:
    """Queue one audit of a random held fragment for each online peer without one."""
    t = now()
    picks = await store.audit_candidates(coord.db, t - coord.online_window)
    return await store.add_checks(coord.db, store.AUDIT, [
        {"target": peer, "pack_pk": pk, "fragment_id": fid, "size": size}
        for peer, pk, fid, size in picks], t)


async def check_payload(coord: Coordinator, task: store.Task, worker: str,
                        online: Mapping[str, Peer]) -> dict[str, Any] | None:
    """An audit's or test's transfer orders; None while its target is offline."""
    target = online.get(task.target or "")
    if target is None or task.fragment_id is None or task.size is None:
        return None
    via = (await coord.relays_of([target.id])).get(target.id, "")

    def ticket(op: str) -> str:
        assert task.fragment_id is not None and task.size is not None
        return coord.ticket(op=op, fragment=task.fragment_id, size=task.size, from_=worker,
                            to=target.id, via=via)

    body: dict[str, Any] = {"target": target.id, "url": target.url,
                            "fragment_id": task.fragment_id, "size": task.size}
    if task.kind == store.AUDIT:  # the holder proves it has the blocks the challenge names
        body |= {"ticket": ticket("prove"), "challenge": proof_audit.challenge(coord, task)}
    elif task.kind == store.TEST_STORE:
        assert task.seed is not None
        body |= {"seed": task.seed.hex(), "ticket": ticket("store")}
    else:
        body |= {"ticket": ticket("fetch"), "delete_ticket": ticket("delete")}
    return body


async def report(coord: Coordinator, task: store.Task, worker: str, outcome: str,
                 detail: str, answer: Any = None) -> None:
    """Close an audit or test with the worker's outcome and act on it. An audit is decided
    on the coordinator's own evidence (proof_audit), never on the worker's word."""
    assert task.target is not None and task.fragment_id is not None
    if task.kind == store.AUDIT:
        await _audit_report(coord, task, worker, outcome, detail, answer)
        return
    await store.finish(coord.db, task.id, store.DONE, {"outcome": outcome, "detail": detail})
    # paid only for a transfer that went through: a "failed" test is a worker's word alone
    if outcome == store.OK_OUTCOME and task.size:
        up = task.size if task.kind == store.TEST_STORE else 0
        await billing.pay_worker(coord, task, worker, up, task.size - up)
    await availability.test_result(coord, task, outcome)


async def _audit_report(coord: Coordinator, task: store.Task, worker: str, outcome: str,
                        detail: str, answer: Any) -> None:
    assert task.target is not None and task.fragment_id is not None and task.size
    verdict = await proof_audit.judge_audit(coord, task, worker, outcome, answer)
    await store.finish(coord.db, task.id, store.DONE, {
        "outcome": verdict.target, "reported": outcome, "by": verdict.verified,
        "detail": detail})
    if verdict.verified == "proof":  # paid only for a result the coordinator verified
        await billing.pay_worker(coord, task, worker, 0, task.size)
    await store.record_audit(coord.db, task.target, worker, task.fragment_id, verdict.target)
    if verdict.target != store.OFFLINE_OUTCOME:
        await _rejudge(coord, task.target, detail or verdict.target)
    if not verdict.worker_honest:  # its report contradicts the evidence: it is marked down
        log.warning("audit worker %s reported %s for %s on %s, the coordinator's own check "
                    "found %s", worker, outcome, task.fragment_id[:12], task.target,
                    verdict.target)
        await store.record_audit(coord.db, worker, "coordinator", task.fragment_id,
                                 store.FAILED_OUTCOME)
        await _rejudge(coord, worker, "its audit reports contradict the evidence")


async def _rejudge(coord: Coordinator, peer_id: str, why: str) -> None:
    reputation, drop = judge(await store.recent_audits(coord.db, peer_id, REPUTATION_WINDOW))
    if await store.set_reputation(coord.db, peer_id, reputation, drop):
        log.warning("peer %s disqualified: failed %d of its last %d audits (%s); its "
                    "fragments will be repaired elsewhere", peer_id, FAIL_LIMIT, RECENT, why)


async def audit_suspects(coord: Coordinator, user: str,
                         suspects: list[tuple[str, str]]) -> tuple[int, int]:
    """An audit for each (fragment id, peer id) a consumer's check named, among that user's
    own placements; (audits queued, placements known). The consumer's word decides nothing:
    the coordinator judges each audit on its own evidence."""
    checks = []
    for fragment_id, peer_id in suspects:
        found = await claims.owned_placement(coord.db, user, fragment_id, peer_id)
        if found is not None:
            checks.append({"target": peer_id, "pack_pk": found[0],
                           "fragment_id": fragment_id, "size": found[1]})
    return await store.add_checks(coord.db, store.AUDIT, checks), len(checks)
