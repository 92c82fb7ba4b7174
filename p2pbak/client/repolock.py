"""The client side of repository locks (`POST /v1/lock`): held for a whole backup,
restore or check (shared) or prune (exclusive), renewed in the background, released at
the end. Each run is its own holder (a random id), so two restores of one machine share
and a prune there waits for both. A client killed while holding one leaves a lock that
lapses after `LOCK_TTL` seconds. `retry` seconds: wait that long for a conflicting lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from p2pbak.errors import Locked, P2pbakError
from p2pbak.net.api import CoordinatorClient, CoordinatorError

log = logging.getLogger("p2pbak.store.machinelock")

LOCK_TTL = 300  # seconds a lock lives without renewal
RENEW_EVERY = 60.0
RETRY_EVERY = 1.0  # seconds between attempts while waiting (--retry-lock)


@dataclass(frozen=True)
class Hold:
    """One run's lock: shared or exclusive, for `command`, under its own holder id."""

    exclusive: bool
    command: str = ""
    holder: str = field(default_factory=lambda: secrets.token_hex(32))
    machine_locked: bool = False  # this run holds the machine's local lock (machinelock)


async def take(coord: CoordinatorClient, hold: Hold, ttl: int = LOCK_TTL) -> None:
    try:
        await coord.call("POST", "/v1/lock", {"exclusive": hold.exclusive, "ttl": ttl,
                                              "holder": hold.holder,
                                              "command": hold.command,
                                              "machine_locked": hold.machine_locked})
    except CoordinatorError as exc:
        if exc.status == 409:
            raise Locked(str(exc)) from None
        raise


async def take_waiting(coord: CoordinatorClient, hold: Hold, retry: float,
                       ttl: int = LOCK_TTL) -> None:
    """Take it, trying again for up to `retry` seconds while another holder has it."""
    deadline = time.monotonic() + max(retry, 0.0)
    while True:
        try:
            return await take(coord, hold, ttl)
        except Locked as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                hint = "" if retry else "; or wait for it with --retry-lock 5m"
                raise Locked(f"{exc}{hint}") from None
            await asyncio.sleep(min(RETRY_EVERY, left))


@contextlib.asynccontextmanager
async def repo_lock(coord: CoordinatorClient, hold: Hold, retry: float = 0.0,
                    ttl: int = LOCK_TTL, renew_every: float = RENEW_EVERY
                    ) -> AsyncIterator[None]:
    """Hold the lock around the body. A lock that lapsed (the coordinator unreachable for
    `ttl`) and was taken by a prune meanwhile is lost: the body is cancelled and Locked
    raised, as restic stops when it cannot refresh its lock, since that prune may delete
    packs this run reuses or reads."""
    await take_waiting(coord, hold, retry, ttl)
    lost: list[Locked] = []
    body = asyncio.current_task()
    assert body is not None
    renewer = asyncio.create_task(_renew(coord, hold, ttl, renew_every, lost, body))
    try:
        yield
    except asyncio.CancelledError:
        if not lost:
            raise
        body.uncancel()
        raise Locked(f"the repository lock lapsed and was taken meanwhile ({lost[0]}): "
                     "stopped; run the command again") from None
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        with contextlib.suppress(P2pbakError):
            await coord.call("DELETE", "/v1/lock", {"holder": hold.holder})


async def _renew(coord: CoordinatorClient, hold: Hold, ttl: int, every: float,
                 lost: list[Locked], body: asyncio.Task[object]) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await take(coord, hold, ttl)
        except Locked as exc:
            lost.append(exc)
            body.cancel()
            return
        except P2pbakError as exc:  # unreachable for now: the next renewal may still work
            log.warning("could not renew the repository lock: %s", exc)
