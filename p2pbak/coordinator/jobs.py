"""Background jobs of the coordinator: async functions run every N seconds.

A job's error is logged and the job runs again at its next turn; it never stops the
server. Jobs start with the app and are cancelled before the database closes. New jobs
(repair checker, storage billing, the daily price job) are one more entry in `builtin_jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2pbak.coordinator.audit import audit_job
from p2pbak.coordinator.availability import availability_job, sample_period
from p2pbak.coordinator.billing import billing_job
from p2pbak.coordinator.checker import checker_job
from p2pbak.coordinator.model import MarketSettings, RepairSettings
from p2pbak.coordinator.moves import move_job
from p2pbak.coordinator.prices import price_job
from p2pbak.coordinator.sweep import availability_sweep
from p2pbak.store.db import jobs as job_runs

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.jobs")

INSTANCE = f"{socket.gethostname()}:{os.getpid()}"  # which coordinator ran a job
JobFn = Callable[["Coordinator"], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    name: str
    interval: float  # seconds between the end of one run and the start of the next
    run: JobFn


class JobRunner:
    """Runs a set of jobs for one coordinator, each in its own task."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = list(jobs)
        self._tasks: list[asyncio.Task[None]] = []
        self.runs: dict[str, int] = {job.name: 0 for job in self.jobs}

    def start(self, coord: Coordinator) -> None:
        for job in self.jobs:
            self._tasks.append(asyncio.create_task(self._loop(job, coord), name=job.name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, job: Job, coord: Coordinator) -> None:
        while True:
            try:
                # several coordinators on one PostgreSQL: the one holding the lock runs
                # it, once per period across all of them
                async with coord.db.job_lock(job.name) as mine:
                    if mine and await job_runs.due(coord.db, job.name, job.interval):
                        await job.run(coord)
                        await job_runs.count_run(coord.db, job.name, INSTANCE)
            except Exception:
                log.exception("background job %s failed; it runs again in %ss",
                              job.name, job.interval)
            self.runs[job.name] += 1
            await asyncio.sleep(job.interval)


def builtin_jobs(online_window: int, market: MarketSettings | None = None,
                 repair: RepairSettings | None = None) -> list[Job]:
    """Every job the coordinator runs, with its period."""
    market = market or MarketSettings()
    repair = repair or RepairSettings()
    return [
        Job("availability-sweep", max(1.0, min(30.0, online_window / 4)), availability_sweep),
        Job("billing", market.billing_interval, billing_job),
        # wakes often, writes a row once per price interval (a restart does not add one)
        Job("prices", min(market.price_interval, 60.0), price_job),
        Job("availability", sample_period(online_window), availability_job),
        Job("repair-checker", repair.checker_interval, checker_job),
        # once per price interval: fragments move toward the lowest balances (§2.4)
        Job("allocation-moves", min(market.price_interval, 60.0), move_job),
        Job("audits", repair.audit_interval, audit_job),
    ]
