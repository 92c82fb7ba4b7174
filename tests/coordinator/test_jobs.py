"""The background job runner: periodic, errors logged and survived, stopped cleanly."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from p2pbak.coordinator.jobs import Job, JobRunner, builtin_jobs
from p2pbak.store.db.database import Database


def test_failing_job_is_logged_and_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def flaky(coord: object) -> None:
        calls.append("flaky")
        if len(calls) % 2:
            raise RuntimeError("boom")

    async def scenario(tmp: Path) -> JobRunner:
        db = await Database.open(tmp / "c.db")  # where the runner counts the job's runs
        runner = JobRunner([Job("flaky", 0.001, flaky)])
        runner.start(SimpleNamespace(db=db))  # type: ignore[arg-type]
        while runner.runs["flaky"] < 4:
            await asyncio.sleep(0.001)
        await runner.stop()
        await db.close()
        return runner

    with caplog.at_level(logging.ERROR), tempfile.TemporaryDirectory() as tmp:
        runner = asyncio.run(scenario(Path(tmp)))
    assert runner.runs["flaky"] >= 4
    assert len(calls) >= 4
    assert "background job flaky failed" in caplog.text
    assert "boom" in caplog.text


def test_builtin_jobs_include_the_availability_sweep() -> None:
    jobs = {job.name: job for job in builtin_jobs(180)}
    assert "availability-sweep" in jobs
    assert jobs["availability-sweep"].interval <= 180 / 4
