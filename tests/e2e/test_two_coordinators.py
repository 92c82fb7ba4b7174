"""Two `p2pbak serve` processes on one PostgreSQL, as a community past one machine runs
them: either answers any request (one signing key, one set of users, peers and packs),
every background job runs once per period across both (counted in the database), and
the ledger sums to exactly 0."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from p2pbak.store.db import bank
from p2pbak.store.db.database import Database
from tests.support.coordinator import coordinator, grid, store_pack
from tests.support.postgres import Server

PERIOD = 0.5  # every job's period here (seconds)
WINDOW = 5.0  # seconds over which the runs are counted
FAST = ("--billing-interval", str(PERIOD), "--checker-interval", str(PERIOD),
        "--audit-interval", str(PERIOD), "--price-interval", str(PERIOD))


JOBS = ("billing", "prices", "repair-checker", "audits")  # each with period PERIOD
GAP_MS = int(PERIOD * 980)  # store.db.jobs.due: a run only this long after the last one


async def watch(url: str) -> tuple[dict[str, list[tuple[int, int]]], bank.Audit]:
    """(runs, last run ms) of each job, sampled through WINDOW, and the bank's audit."""
    db = await Database.open(url)
    seen: dict[str, list[tuple[int, int]]] = {}
    try:
        for _ in range(int(WINDOW / 0.05)):  # a bounded number of samples
            for name, runs, last in await db.all(
                    "SELECT name, runs, last_run_ms FROM job_runs"):
                seen.setdefault(name, []).append((int(runs), int(last)))
            await asyncio.sleep(0.05)
        return seen, await bank.audit(db)
    finally:
        await db.close()


def test_two_coordinators_share_everything_and_run_each_job_once_per_period(
        tmp_path: Path, postgres_server: Server) -> None:
    url = postgres_server.new_database()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with coordinator(tmp_path / "a", *FAST, db=url) as a, \
            coordinator(tmp_path / "b", *FAST, db=url) as b:
        assert a.api.ok("GET", "/v1/health")["ticket_key"] == \
            b.api.ok("GET", "/v1/health")["ticket_key"]
        peers = grid(a.api, "pa", 4) + grid(b.api, "pb", 4)  # registered through either
        owner = peers[0]
        committed = store_pack(owner, "c" * 64)  # planned, ticketed, committed through a
        via_b = b.api.as_(owner.token)  # the same machine token works on b
        got = via_b.ok("GET", f"/v1/packs/{'c' * 64}")
        assert sorted(f["fragment_id"] for f in got["fragments"]) == \
            sorted(f["fragment_id"] for f in committed["kept"])
        assert via_b.ok("GET", "/v1/status")["packs"] == 1
        seen, audit = asyncio.run(watch(url))
    assert set(JOBS) <= set(seen), seen
    for name in JOBS:
        samples = seen[name]
        assert samples[-1][0] > samples[0][0], (name, samples)  # it ran meanwhile
        # once per period across both: k more runs between two samples put the last one at
        # least k gaps later (by the database's own clock); two coordinators each running it
        # would record runs closer together than that
        for (r0, t0), (r1, t1) in itertools.pairwise(samples):
            assert t1 - t0 >= (r1 - r0) * GAP_MS, (name, (r0, t0), (r1, t1))
    assert audit.ok and audit.sum == 0, audit
