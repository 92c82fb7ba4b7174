"""The client side of repository locks (`POST /v1/lock`): held for a whole backup (shared)
or prune (exclusive), renewed in the background, released at the end. A client killed
while holding one leaves a lock that lapses after `LOCK_TTL` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from p2pbak.errors import Locked, P2pbakError
from p2pbak.net.api import CoordinatorClient, CoordinatorError

log = logging.getLogger("p2pbak.store.machinelock")

LOCK_TTL = 300  # seconds a lock lives without renewal
RENEW_EVERY = 60.0


async def take(coord: CoordinatorClient, exclusive: bool, ttl: int = LOCK_TTL) -> None:
    try:
        await coord.call("POST", "/v1/lock", {"exclusive": exclusive, "ttl": ttl})
    except CoordinatorError as exc:
        if exc.status == 409:
            raise Locked(str(exc)) from None
        raise


@contextlib.asynccontextmanager
async def repo_lock(coord: CoordinatorClient, exclusive: bool) -> AsyncIterator[None]:
    await take(coord, exclusive)
    renewer = asyncio.create_task(_renew(coord, exclusive))
    try:
        yield
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        with contextlib.suppress(P2pbakError):
            await coord.call("DELETE", "/v1/lock")


async def _renew(coord: CoordinatorClient, exclusive: bool) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY)
        try:
            await take(coord, exclusive)
        except P2pbakError as exc:  # unreachable for now: the next renewal may still work
            log.warning("could not renew the repository lock: %s", exc)
