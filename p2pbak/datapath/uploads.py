"""The backup's event-loop side: packs put into the repository a few at a time, and the
checkpoint index blobs that make an interrupted backup resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import encode_index_rows
from p2pbak.datapath.pack import Pack
from p2pbak.datapath.repository import Repository
from p2pbak.errors import P2pbakError


class Uploader:
    """Puts packs into the repository, at most `limit` at once (event-loop side)."""

    def __init__(self, repo: Repository, limit: int,
                 committed: Callable[[Pack], Awaitable[None]] | None = None) -> None:
        self.repo = repo
        self.committed = committed
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def submit(self, pack: Pack) -> None:
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        task = asyncio.create_task(self._put(pack))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, pack: Pack) -> None:
        try:
            await self.repo.put_pack(pack.pack_id, pack.data)
            if self.committed is not None:
                await self.committed(pack)
        except Exception as exc:  # surfaced by submit()/drain(), never left unretrieved
            self._failure = self._failure or exc
        finally:
            self._slots.release()

    def cancel(self) -> None:
        """Stop the uploads; a pack submitted later (a worker still running) is refused."""
        self._failure = self._failure or P2pbakError("backup interrupted")
        for task in self._tasks:
            task.cancel()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._failure is not None:
            raise self._failure


class Checkpoints:
    """Crash safety: each pack is indexed as soon as it is committed, so a backup killed
    later leaves no committed pack unknown and the next run reuses it; the snapshot is
    registered last. After a whole run these one-pack index blobs are replaced by one."""

    def __init__(self, repo: Repository, keys: Keys) -> None:
        self.repo, self.keys = repo, keys
        self.ids: list[str] = []

    async def add(self, pack: Pack) -> None:
        index_id, blob = encode_index_rows(self.keys, [(pack.pack_id, pack.rows)])
        await self.repo.put_index(index_id, blob)
        self.ids.append(index_id)

    async def drop(self) -> None:
        # at once: a round trip each, one per pack of the backup
        await asyncio.gather(*(self.repo.delete_index(i) for i in self.ids))
