"""Two coroutines run at once (their round trips overlap), with no stray task left."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

A = TypeVar("A")
B = TypeVar("B")


async def both(first: Coroutine[Any, Any, A], second: Coroutine[Any, Any, B]) -> tuple[A, B]:
    """Both results, run at once; if one fails the other is stopped (no stray task)."""
    a, b = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        return await a, await b
    finally:
        for task in (a, b):
            task.cancel()  # a no-op once done
        await asyncio.gather(a, b, return_exceptions=True)
