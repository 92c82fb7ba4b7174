"""A run whose repository lock lapsed and was taken by a prune meanwhile stops with
Locked (exit 11) instead of going on under a lock it no longer holds, as restic does; a
lock renewed in time is kept, whatever happens around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from p2pbak.client.repolock import Hold, repo_lock, take
from p2pbak.errors import Locked
from p2pbak.net.api import CoordinatorClient
from tests.coordinator.test_restore_order import Member, coordinator

pytestmark = pytest.mark.slow
TTL = 10  # the shortest lock the coordinator grants


@contextlib.asynccontextmanager
async def machine(tmp: Path) -> AsyncIterator[CoordinatorClient]:
    """A coordinator on loopback and one machine's client of it."""
    async with coordinator(tmp) as (url, _), aiohttp.ClientSession() as http:
        member = Member(http, url, "alice")
        await member.join(1)
        machine_id, secret = member.token.split(".", 1)
        async with CoordinatorClient(url, machine_id=machine_id, secret=secret) as coord:
            yield coord


def test_a_lapsed_lock_taken_by_a_prune_stops_the_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with machine(tmp_path) as coord:
            reached: list[str] = []
            with pytest.raises(Locked, match="lapsed and was taken"):
                async with repo_lock(coord, Hold(False, "backup"), ttl=TTL,
                                     renew_every=TTL + 3):
                    await asyncio.sleep(TTL + 1.2)  # lapsed (whole seconds): prune takes it
                    await take(coord, Hold(True, "prune"), ttl=60)
                    reached.append("prune")
                    await asyncio.sleep(5)  # the renewal finds the prune: cancelled
                    reached.append("went on")
            assert reached == ["prune"]

    asyncio.run(scenario())


def test_a_renewed_lock_is_kept_and_refuses_the_prune(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with machine(tmp_path) as coord:
            async with repo_lock(coord, Hold(False, "backup"), ttl=TTL,
                                 renew_every=TTL / 3):
                await asyncio.sleep(TTL + 1.2)  # past the first ttl: renewed meanwhile
                with pytest.raises(Locked):
                    await take(coord, Hold(True, "prune"), ttl=60)
            await take(coord, Hold(True, "prune"), ttl=60)  # released at the end

    asyncio.run(scenario())
