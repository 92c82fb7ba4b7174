"""Reading blobs back: index lookup, pack fetch (cached, fetched ahead), open and verify."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from p2pbak.datapath.blobs import BlobType, open_blob
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import Index, Location
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.tree import Node, decode_tree
from p2pbak.errors import MissingBlob


class BlobReader:
    """Fetches packs through the repository; keeps the last few and fetches ahead."""

    def __init__(self, repo: Repository, keys: Keys, index: Index, ahead: int = 2) -> None:
        self.repo, self.keys, self.index, self.ahead = repo, keys, index, ahead
        self._packs: OrderedDict[str, asyncio.Task[bytes]] = OrderedDict()
        self._trees: dict[str, list[Node]] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}

    def plan(self, pack_order: Sequence[str]) -> None:
        """The packs about to be read, in order, so the next ones are fetched ahead."""
        self._order = list(pack_order)
        self._position = {p: i for i, p in enumerate(self._order)}

    def plan_content(self, content: Sequence[str]) -> None:
        """`plan` the packs of a file's chunks, in the file's order."""
        self.plan([loc.pack_id for c in content if (loc := self.index.get(c))])

    def _fetch(self, pack_id: str) -> asyncio.Task[bytes]:
        task = self._packs.get(pack_id)
        if task is None:
            task = asyncio.ensure_future(self.repo.get_pack(pack_id))
            # A fetch-ahead nobody awaits must not warn about its lost exception.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._packs[pack_id] = task
            while len(self._packs) > self.ahead + 2:
                _, old = self._packs.popitem(last=False)
                if not old.done():
                    old.cancel()
        self._packs.move_to_end(pack_id)
        return task

    async def pack(self, pack_id: str) -> bytes:
        task = self._fetch(pack_id)
        where = self._position.get(pack_id)
        if where is not None:
            for nxt in self._order[where + 1:where + 1 + self.ahead]:
                self._fetch(nxt)
            self._packs.move_to_end(pack_id)
        return await task

    async def blob(self, blob_id: str, kind: BlobType = BlobType.DATA) -> bytes:
        loc = self.index.get(blob_id)
        if loc is None or loc.kind != kind:
            raise MissingBlob(f"blob {blob_id[:12]} is missing from the repository index; "
                              "run `p2pbak check`")
        return self._open(blob_id, loc, await self.pack(loc.pack_id))

    def _open(self, blob_id: str, loc: Location, data: bytes) -> bytes:
        return open_blob(self.keys, loc.kind, blob_id,
                         memoryview(data)[loc.offset:loc.offset + loc.length])

    def _decoded(self, tree_id: str, raw: bytes) -> list[Node]:
        nodes = self._trees[tree_id] = decode_tree(raw)
        return nodes

    async def tree(self, tree_id: str) -> list[Node]:
        nodes = self._trees.get(tree_id)
        if nodes is None:
            nodes = self._decoded(tree_id, await self.blob(tree_id, BlobType.TREE))
        return nodes

    def tree_now(self, tree_id: str) -> list[Node] | None:
        """The tree if it is decoded already or its pack has arrived, else None (then
        `tree`). Callable from any thread: a walk of unchanged folders, whose trees share
        a few packs, skips a hop to the event loop per folder."""
        nodes = self._trees.get(tree_id)
        if nodes is not None:
            return nodes
        loc = self.index.get(tree_id)
        task = self._packs.get(loc.pack_id) if loc is not None else None
        if (loc is None or loc.kind != BlobType.TREE or task is None or not task.done()
                or task.cancelled() or task.exception() is not None):
            return None
        return self._decoded(tree_id, self._open(tree_id, loc, task.result()))

    def close(self) -> None:
        """Drop the packs and trees it holds (the index stays: callers read it after)."""
        for task in self._packs.values():
            if not task.done():
                task.cancel()
        self._packs.clear()
        self._trees.clear()
