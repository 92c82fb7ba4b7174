"""Group commit: writes that arrive while one is being committed go in the next commit
together. A commit (an fsync on SQLite, a WAL flush on PostgreSQL, each behind the one
write lock) costs the same for one row as for hundreds, so heartbeats, the bulk of a large
community's requests, are written many per commit. Nobody waits longer than one commit
in flight plus its own; every caller still gets its own answer only once it is durable.

Reads that many requests make at once (each request's credentials) are coalesced the
same way: one statement for all the lookups that arrived during the one in flight, each
answered from a state committed after the request arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 500  # items per commit


class GroupCommit(Generic[T, R]):
    """`await add(item)` → this item's result of `write(batch)`, which runs one at a time."""

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[list[R]]]) -> None:
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(done)  # a caller gone does not fail its batch

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # every waiter of this batch gets the error
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
