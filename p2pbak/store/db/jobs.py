"""Background job runs, counted in the database so every coordinator sees them (SQL only)."""

from __future__ import annotations

from p2pbak.store.db.database import Database, now


async def count_run(db: Database, name: str, by: str) -> None:
    """One more run of job `name`, by coordinator `by`."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO job_runs(name, runs, last_run, last_by) VALUES (?, 1, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET runs = job_runs.runs + 1,"
            " last_run = excluded.last_run, last_by = excluded.last_by", (name, now(), by))


async def runs(db: Database) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await db.all("SELECT name, runs FROM job_runs")}
