"""Several coordinators on one PostgreSQL: one ledger that concurrent writers through
different pools cannot unbalance or double, a job that one coordinator at a time runs
(taken over when the holder dies), a clear error for a server that is not there."""

from __future__ import annotations

import asyncio
import random

import pytest

from p2pbak.errors import P2pbakError
from p2pbak.market.bank import BANK, Posting
from p2pbak.store.db import bank
from p2pbak.store.db import jobs as job_runs
from p2pbak.store.db.database import Database, schema_version
from p2pbak.store.db.schema import MIGRATIONS
from tests.support.postgres import Server

OPS = 2000  # ledger operations per run, spread over the coordinators' pools
REFS = 1500  # fewer refs than operations: some refs are booked concurrently, twice


def test_concurrent_bookings_through_three_pools_sum_to_zero_and_pay_once(
        postgres_server: Server) -> None:
    url = postgres_server.new_database()

    async def scenario() -> None:
        dbs = [await Database.open(url) for _ in range(3)]  # three coordinators' pools
        try:
            rng = random.Random(7)
            ops = [(rng.randrange(REFS), rng.randrange(20), rng.randrange(1, 10**6))
                   for _ in range(OPS)]

            async def one(i: int, ref: int, user: int, amount: int) -> bool:
                return await bank.book(dbs[i % 3], kind="backup", ref=f"r{ref}",
                                       user=f"u{user}", postings=[
                                           Posting(f"user:u{user}", -amount),
                                           Posting(BANK, amount)])

            booked = await asyncio.gather(*(one(i, *op) for i, op in enumerate(ops)))
            refs = {ref for ref, _, _ in ops}
            assert sum(booked) == len(refs)  # every ref once, never twice
            audit = await bank.audit(dbs[0])
            assert audit.ok and audit.sum == 0 and audit.balance_sum == 0, audit
            assert audit.transactions == len(refs) and audit.entries == 2 * len(refs)
        finally:
            for db in dbs:
                await db.close()

    asyncio.run(scenario())


def test_one_coordinator_at_a_time_holds_a_job_and_another_takes_it_over(
        postgres_server: Server) -> None:
    url = postgres_server.new_database()

    async def scenario() -> None:
        a, b = await Database.open(url), await Database.open(url)
        try:
            async with a.job_lock("prices") as mine:
                assert mine
                async with b.job_lock("prices") as theirs:
                    assert not theirs  # held by a
                async with b.job_lock("billing") as other:
                    assert other  # another job: its own lock
                await job_runs.count_run(a, "prices", "a")
            async with b.job_lock("prices") as now_b:
                assert now_b  # a let go
            hold = a.job_lock("checker")
            assert await hold.__aenter__()
            a.pool.terminate()  # type: ignore[attr-defined]  # the holder dies, lock held
            for _ in range(100):  # the server notices the dead connection in a moment
                async with b.job_lock("checker") as taken:
                    if taken:
                        break
                await asyncio.sleep(0.05)
            assert taken
            assert await job_runs.runs(b) == {"prices": 1}
        finally:
            await b.close()

    asyncio.run(scenario())


def test_two_coordinators_migrate_one_database_once(postgres_server: Server) -> None:
    url = postgres_server.new_database()

    async def scenario() -> None:
        dbs = await asyncio.gather(*(Database.open(url) for _ in range(3)))
        try:
            assert [await schema_version(db) for db in dbs] == [len(MIGRATIONS)] * 3
            assert await dbs[0].scalar("SELECT count(*) FROM schema_version") == \
                len(MIGRATIONS)
        finally:
            for db in dbs:
                await db.close()

    asyncio.run(scenario())


def test_a_server_that_is_not_there_is_a_one_line_error() -> None:
    async def scenario() -> None:
        await Database.open("postgresql://me:secret@127.0.0.1:1/none")

    with pytest.raises(P2pbakError, match="cannot connect to postgresql://me:\\*\\*\\*@") as exc:
        asyncio.run(scenario())
    assert "secret" not in str(exc.value)
