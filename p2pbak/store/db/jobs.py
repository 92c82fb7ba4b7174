"""Background job runs, counted in the database so every coordinator sees them (SQL only).

With several coordinators on one database each job runs under its lock (`job_lock`) and
only when its period has passed since the last run by any of them: once per period."""

from __future__ import annotations

import time

from p2pbak.store.db.database import Database


def _ms() -> int:
    return int(time.time() * 1000)


async def due(db: Database, name: str, period: float) -> bool:
    """Whether `period` seconds have passed since any coordinator last ran job `name`."""
    last = await db.scalar("SELECT last_run_ms FROM job_runs WHERE name = ?", (name,))
    # 2 % slack: a runner that slept exactly one period must find its own job due
    return last is None or _ms() - int(last) >= int(period * 980)


async def count_run(db: Database, name: str, by: str) -> None:
    """One more run of job `name`, by coordinator `by`."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO job_runs(name, runs, last_run_ms, last_by) VALUES (?, 1, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET runs = job_runs.runs + 1,"
            " last_run_ms = excluded.last_run_ms, last_by = excluded.last_by",
            (name, _ms(), by))


async def runs(db: Database) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await db.all("SELECT name, runs FROM job_runs")}
