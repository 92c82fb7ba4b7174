"""Audits: outcomes, reputation, disqualification, and the repair that follows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.coordinator import audit, checker, repair
from p2pbak.localgrid.grid import free_port
from p2pbak.store.db import tasks as store
from tests.support.repair import World, age_tasks, world

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends

outcomes = st.lists(st.sampled_from([store.OK_OUTCOME, store.FAILED_OUTCOME]), max_size=30)


@given(outcomes)
def test_three_failures_in_the_last_five_disqualify(recent: list[str]) -> None:
    reputation, drop = audit.judge(recent)
    assert drop == (recent[:5].count(store.FAILED_OUTCOME) >= 3)
    window = recent[:audit.REPUTATION_WINDOW]
    assert reputation == (window.count(store.OK_OUTCOME) / len(window) if window else 1.0)


def test_old_failures_do_not_disqualify() -> None:
    ok, bad = store.OK_OUTCOME, store.FAILED_OUTCOME
    assert audit.judge([ok] * 5 + [bad] * 10) == (5 / 15, False)
    assert audit.judge([bad, ok, bad, ok, bad])[1]
    assert not audit.judge([bad, ok, bad, ok, ok, bad])[1]


@contextlib.asynccontextmanager
async def holder_without_fragments() -> AsyncIterator[str]:
    """An HTTP server answering every fragment request 404, as a holder that deleted its
    fragments does: the coordinator's own challenge finds it failing."""
    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such fragment"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/v1/fragments/{tail:.*}", gone)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def run_audit(w: World, target: str, outcome: str) -> None:
    """Queue audits, lease the one of `target` to another peer, report `outcome`."""
    await audit.audit_job(w.coord)
    (task,) = [t for t in await store.queued(w.db, 50)
               if t.kind == store.AUDIT and t.target == target]
    worker = next(p for p in w.peers if p != target)
    assert await store.lease(w.db, task.id, worker, 60)
    assert await audit.check_payload(w.coord, task, worker, {}) is None  # target offline: wait
    await audit.report(w.coord, task, worker, outcome, "test")


def test_a_peer_failing_audits_is_disqualified_and_its_packs_repaired(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with world(tmp_path, 7) as w:
            p = w.peers
            pk = await w.add_pack("p", p[1:6], k=2, n=5)
            await audit.audit_job(w.coord)
            targets = {t.target for t in await store.queued(w.db, 50)}
            assert targets == set(p[1:6]), "one audit per online holder, none for others"
            liar = p[3]
            # whatever the worker says, a holder the coordinator cannot reach either is
            # offline, not failing (and the worker is not blamed)
            for outcome in (store.FAILED_OUTCOME, store.OFFLINE_OUTCOME, store.OK_OUTCOME,
                            store.FAILED_OUTCOME, store.FAILED_OUTCOME):
                await run_audit(w, liar, outcome)
            state = await w.db.scalar("SELECT state FROM peers WHERE id = ?", (liar,))
            assert state == "active", "offline audits are not failures"
            assert await checker.checker_job(w.coord) == 0
            async with holder_without_fragments() as url:  # now it answers: "not here"
                async with w.db.transaction() as conn:
                    await conn.execute("UPDATE peers SET url = ? WHERE id = ?", (url, liar))
                for _ in range(audit.FAIL_LIMIT):
                    await run_audit(w, liar, store.FAILED_OUTCOME)
            row = await w.db.one("SELECT state, reputation FROM peers WHERE id = ?", (liar,))
            assert row is not None and tuple(row) == (store.DISQUALIFIED, 0.0)
            workers = await w.db.scalar("SELECT count(*) FROM peers WHERE state = ?",
                                        (store.DISQUALIFIED,))
            assert workers == 1, "the workers' reports agreed with the evidence"
            assert await checker.checker_job(w.coord) == 1
            (task,) = [t for t in await store.queued(w.db, 50) if t.kind == store.REPAIR]
            assert task.pack_pk == pk and task.priority == 2
            await age_tasks(w, repair.DISPATCH_GRACE + 1)
            async with w.db.transaction() as conn:
                await conn.execute("DELETE FROM tasks WHERE kind = 'audit'")
            payload = await repair.next_task(w.coord, p[6])
            assert payload is not None and payload["missing"] == [2]
            assert liar in {s["peer_id"] for s in payload["sources"]}  # ids still checked

    asyncio.run(scenario())
