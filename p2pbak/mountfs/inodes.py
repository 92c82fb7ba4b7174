"""The mounted tree as numbered inodes: virtual folders (layout.py) above the snapshots'
own trees, folders listed from their tree blobs on first use, file bytes read by chunk.

Everything is read through one BlobReader (the data path's, as `dump` and `restore` use),
so packs are fetched on demand and the reader's cache of recent packs serves neighbours.
Pure asyncio and data path: the FUSE adapter (fs.py) only translates calls.
"""

from __future__ import annotations

import bisect
import stat
from collections import OrderedDict
from dataclasses import dataclass, field

from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.tree import DIR, FILE, Node
from p2pbak.errors import P2pbakError
from p2pbak.mountfs.layout import Folder, Link, SnapDir, path_folders

ROOT = 1  # FUSE's root inode
_KEEP_CHUNKS = 4  # decoded chunks kept: a read of 128 KiB after another rarely re-opens one
_TYPE = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR}


@dataclass
class Entry:
    """One inode: a snapshot's node, or a virtual folder or link."""

    parent: int
    mode: int  # st_mode with the type bits
    mtime_ns: int
    node: Node | None = None  # a snapshot's file, folder or link
    target: bytes = b""  # a link's target
    folder: Folder | None = None  # a virtual folder's content
    root: str = ""  # inside a snapshot: its root tree id (for the folder's leaves)
    whole: str = ""  # a snapshot of `/`: the root tree's one entry that is its folder
    children: dict[bytes, int] | None = None  # name -> inode, once listed
    starts: list[int] = field(default_factory=list)  # a file's chunk offsets, once opened

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def size(self) -> int:
        if self.node is not None and self.node.type == FILE:
            return self.node.size
        return len(self.target)


class Inodes:
    def __init__(self, reader: BlobReader, top: Folder, mtime_ns: int) -> None:
        self.reader = reader
        self.entries: dict[int, Entry] = {
            ROOT: Entry(ROOT, stat.S_IFDIR | 0o555, mtime_ns, folder=top)}
        self._chunks: OrderedDict[str, bytes] = OrderedDict()
        self.bytes_read = 0

    def _add(self, entry: Entry) -> int:
        ino = len(self.entries) + 1
        self.entries[ino] = entry
        return ino

    def _of_node(self, parent: int, node: Node) -> Entry:
        mode = _TYPE.get(node.type, stat.S_IFLNK) | node.mode
        return Entry(parent, mode, node.mtime_ns, node=node, target=node.target)

    def _virtual(self, parent: int, item: Folder | Link | SnapDir, mtime_ns: int,
                 root: str) -> Entry:
        if isinstance(item, Link):
            return Entry(parent, stat.S_IFLNK | 0o777, mtime_ns, target=item.target)
        if isinstance(item, SnapDir):
            record = item.record
            folder = path_folders(record.paths)
            return Entry(parent, stat.S_IFDIR | 0o555, int(record.time.timestamp() * 1e9),
                         folder=folder if isinstance(folder, dict) else {},
                         whole=folder if isinstance(folder, str) else "", root=record.tree)
        return Entry(parent, stat.S_IFDIR | 0o555, mtime_ns, folder=item, root=root)

    async def _root_node(self, root: str, name: str) -> Node:
        for node in await self.reader.tree(root):
            if node.display_name == name:
                return node
        raise P2pbakError(f"{name!r} is not in the snapshot's root tree; run `p2pbak check`")

    async def _list(self, ino: int, entry: Entry) -> list[tuple[bytes, Entry]]:
        node = entry.node
        if entry.whole:  # `/` was backed up: the snapshot's folder is that one entry's
            node = await self._root_node(entry.root, entry.whole)
        if node is not None:
            return [(n.name, self._of_node(ino, n)) for n in await self.reader.tree(node.subtree)]
        out = []
        for name, item in (entry.folder or {}).items():
            if isinstance(item, str):
                out.append((name, self._of_node(ino, await self._root_node(entry.root, item))))
            else:
                out.append((name, self._virtual(ino, item, entry.mtime_ns, entry.root)))
        return out

    async def children(self, ino: int) -> dict[bytes, int]:
        """A folder's entries, name -> inode, sorted by name (numbered on first use)."""
        entry = self.entries[ino]
        if entry.children is None:
            listed = sorted(await self._list(ino, entry), key=lambda item: item[0])
            if entry.children is None:  # another request may have listed it meanwhile
                entry.children = {name: self._add(e) for name, e in listed}
        return entry.children

    async def lookup(self, parent: int, name: bytes) -> int:
        if name == b".":
            return parent
        if name == b"..":
            return self.entries[parent].parent
        ino = (await self.children(parent)).get(name)
        if ino is None:
            raise KeyError(name)
        return ino

    def open(self, ino: int) -> None:
        """Ready a file for reads: its chunks' offsets, and its packs for fetching ahead."""
        entry = self.entries[ino]
        node = entry.node
        if node is None or node.type != FILE:
            return
        if not entry.starts:
            index, starts, at = self.reader.index, [], 0
            for chunk in node.content:
                starts.append(at)
                loc = index.get(chunk)
                at += loc.raw_length if loc is not None else 0
            entry.starts = starts
        self.reader.plan_content(node.content)  # at every open: the reader has one plan

    async def _chunk(self, chunk_id: str) -> bytes:
        data = self._chunks.get(chunk_id)
        if data is None:
            data = self._chunks[chunk_id] = await self.reader.blob(chunk_id)
            while len(self._chunks) > _KEEP_CHUNKS:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(chunk_id)
        return data

    async def read(self, ino: int, offset: int, size: int) -> bytes:
        """`size` bytes of a file from `offset` (fewer at its end)."""
        entry = self.entries[ino]
        node = entry.node
        assert node is not None and node.type == FILE
        self.open(ino)
        end = min(offset + size, node.size)
        parts: list[bytes] = []
        i = max(bisect.bisect_right(entry.starts, offset) - 1, 0)
        while offset < end and i < len(node.content):
            data = await self._chunk(node.content[i])
            start = entry.starts[i]
            parts.append(data[offset - start:end - start])
            offset = start + len(data)
            i += 1
        out = b"".join(parts)
        self.bytes_read += len(out)
        return out
