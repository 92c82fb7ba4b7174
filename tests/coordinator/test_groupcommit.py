"""Group commit: concurrent heartbeats share commits, each caller gets its own answer, a
failed commit fails only its own batch; heartbeats in one commit land on both backends;
concurrent credential lookups share statements."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from p2pbak.coordinator import identity
from p2pbak.coordinator.credentials import authenticate
from p2pbak.coordinator.groupcommit import GroupCommit
from p2pbak.coordinator.service import Coordinator
from p2pbak.store.db import peers, users
from p2pbak.store.db.database import Database
from p2pbak.store.db.peers import Beat
from tests.support.postgres import Backend


def test_concurrent_items_share_commits_and_get_their_own_results() -> None:
    commits: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        commits.append(list(items))
        await asyncio.sleep(0.01)  # a commit in flight: later arrivals queue for the next
        return [i * i for i in items]

    async def go() -> list[int]:
        batcher: GroupCommit[int, int] = GroupCommit(write)
        return await asyncio.gather(*(batcher.add(i) for i in range(200)))

    assert asyncio.run(go()) == [i * i for i in range(200)]
    assert sorted(i for c in commits for i in c) == list(range(200))  # each item once
    assert len(commits) < 20  # far fewer commits than items


def test_a_failed_commit_fails_its_batch_only() -> None:
    async def write(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        if 13 in items:
            raise RuntimeError("disk full")
        return list(items)

    async def go() -> None:
        batcher: GroupCommit[int, int] = GroupCommit(write)
        with pytest.raises(RuntimeError, match="disk full"):
            await batcher.add(13)
        assert await batcher.add(14) == 14  # the next batch commits

    asyncio.run(go())


def test_heartbeats_in_one_commit_know_their_own_peers(db_backend: Backend,
                                                       tmp_path: Path) -> None:
    async def go() -> None:
        db = await Database.open(db_backend.database(tmp_path))
        try:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO users(name, salt, login_hash, login_hash_key,"
                                   " keyfile, created) VALUES ('u', ?, ?, ?, ?, 0)",
                                   (b"s", b"h", b"k", b"f"))
                for m in ("a", "b"):
                    await conn.execute("INSERT INTO machines(id, user_name, name, secret_hash,"
                                       " created) VALUES (?, 'u', ?, ?, 0)", (m, m, b"x"))
            await peers.announce(db, peer_id="a", url="http://10.0.0.1:1", subnet="10.0",
                                 space=1, upload=1, download=1)
            beats = [Beat("a", "http://10.0.0.2:1", "10.0", 5, 6), Beat("b", "u", "s", 0, 0),
                     Beat("a", "http://10.0.0.2:1", "10.0", 7, 8)]
            assert await peers.heartbeats(db, beats) == [True, False, True]
            got = await peers.get(db, "a")
            assert got is not None and got.last_seen is not None
            assert (got.url, got.stored_bytes, got.free_bytes) == ("http://10.0.0.2:1", 7, 8)
            assert await db.scalar("SELECT count(*) FROM heartbeats") == 2
        finally:
            await db.close()

    asyncio.run(go())


def test_concurrent_credentials_share_lookups_and_each_gets_its_own_answer(
        db_backend: Backend, tmp_path: Path) -> None:
    """Every request's machine lookup (coordinator.credentials) goes through one coalescing
    queue: many at once share statements, and a wrong secret or an unknown id among them is
    refused while the others pass."""
    async def go() -> None:
        coord = await Coordinator.start(db_backend.database(tmp_path), run_jobs=False)
        try:
            made = [await identity.create_user(coord, user=f"u{i}", salt=b"s" * 16,
                                               login_key=b"k" * 32, keyfile=b"f",
                                               machine_name="m") for i in range(5)]
            lookups: list[int] = []

            async def counted(ids: Sequence[str]) -> list[users.Machine | None]:
                lookups.append(len(ids))
                return await users.machines(coord.db, ids)

            coord.machines = GroupCommit(counted)
            calls = [(m.machine_id, m.secret) for m in made] * 10 + [
                (made[0].machine_id, "wrong"), ("f" * 32, made[1].secret)]
            found = await asyncio.gather(*(authenticate(coord, mid, s) for mid, s in calls))
            assert [f.id if f else None for f in found] == \
                [mid for mid, _ in calls[:-2]] + [None, None]
            assert sum(lookups) == len(calls) and len(lookups) < len(calls) / 4
            assert await users.machines(coord.db, ["nope", made[2].machine_id, "nope"]) == \
                [None, found[2], None]
        finally:
            await coord.stop()

    asyncio.run(go())
