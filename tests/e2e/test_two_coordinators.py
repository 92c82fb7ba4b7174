"""Two `p2pbak serve` processes on one PostgreSQL, as a community past one machine runs
them: either answers any request (one signing key, one set of users, peers and packs),
every background job runs once per period across both (counted in the database), and
the ledger sums to exactly 0."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from p2pbak.store.db import bank
from p2pbak.store.db import jobs as job_runs
from p2pbak.store.db.database import Database
from tests.support.coordinator import coordinator, grid, store_pack
from tests.support.postgres import Server

PERIOD = 0.5  # every job's period here (seconds)
WINDOW = 5.0  # seconds over which the runs are counted
FAST = ("--billing-interval", str(PERIOD), "--checker-interval", str(PERIOD),
        "--audit-interval", str(PERIOD), "--price-interval", str(PERIOD))


async def counts(url: str) -> tuple[dict[str, int], bank.Audit]:
    db = await Database.open(url)
    try:
        return await job_runs.runs(db), await bank.audit(db)
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
        before, t0 = asyncio.run(counts(url)), time.monotonic()
        time.sleep(WINDOW)
        after, elapsed = asyncio.run(counts(url)), time.monotonic() - t0
    runs, audit = after
    assert {"billing", "prices", "repair-checker", "audits"} <= set(runs), runs
    for name in ("billing", "prices", "repair-checker", "audits"):  # period PERIOD
        n = runs[name] - before[0].get(name, 0)
        # once per period across both: near elapsed / PERIOD, where two coordinators
        # running it each would come near twice that
        assert 1 <= n <= elapsed / PERIOD * 1.3 + 1, (name, n, elapsed)
    assert audit.ok and audit.sum == 0, audit
