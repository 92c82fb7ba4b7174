"""Bandwidth caps: a token bucket the peer's fragment server and a relay both hold to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """At most `rate` bytes/s: over any span T, no more than rate·T + `burst` bytes pass,
    the burst a tenth of a second's worth (the cap is a cap, not an average); 0 = no cap."""

    BURST_SECONDS = 0.1

    def __init__(self, rate: int = 0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.waited = 0.0  # seconds spent holding bytes back, for status and tests
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @property
    def burst(self) -> float:
        return self.rate * self.BURST_SECONDS

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self._tokens = min(self._tokens, self.burst)

    async def take(self, n: int) -> None:
        """Wait until `n` bytes may pass (callers queue, so the cap holds across them)."""
        if self.rate <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                pause = -self._tokens / self.rate
                self.waited += pause
                await self._sleep(pause)
