"""`dump`: one file of a snapshot as its bytes, or a folder as a tar stream (restic's dump).

Written chunk by chunk to a binary stream, so a large file never sits in memory whole.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from typing import BinaryIO

from p2pbak.datapath.browse import open_reader, walk
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord, resolve
from p2pbak.datapath.tree import DIR, FILE, SYMLINK, Node
from p2pbak.errors import P2pbakError

_BLOCK = tarfile.BLOCKSIZE
_TYPES = {FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE}


async def _content(reader: BlobReader, node: Node, out: BinaryIO) -> int:
    reader.plan_content(node.content)
    size = 0
    for chunk_id in node.content:
        data = await reader.blob(chunk_id)
        out.write(data)
        size += len(data)
    if size != node.size:
        raise P2pbakError(f"{node.display_name}: {size} bytes read, {node.size} expected; "
                          "run `p2pbak check`")
    return size


def _header(name: str, node: Node) -> bytes:
    info = tarfile.TarInfo(name + ("/" if node.type == DIR else ""))
    info.type = _TYPES[node.type]
    info.mode = node.mode
    info.mtime = node.mtime_ns // 1_000_000_000
    info.size = node.size if node.type == FILE else 0
    if node.type == SYMLINK:
        info.linkname = node.target.decode("utf-8", "surrogateescape")
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


async def _tar(reader: BlobReader, items: Sequence[tuple[str, Node]], out: BinaryIO) -> int:
    """A tar stream of `items`; the number of entries."""
    for name, node in items:
        out.write(_header(name, node))
        if node.type == FILE:
            size = await _content(reader, node, out)
            out.write(b"\0" * (-size % _BLOCK))
    out.write(b"\0" * (2 * _BLOCK))  # end of archive
    return len(items)


async def dump(repo: Repository, master: bytes, record: SnapshotRecord, rel: str,
               out: BinaryIO) -> dict[str, object]:
    """Write the node at `rel` (below the root tree) to `out`; what was written."""
    reader = await open_reader(repo, master)
    try:
        node, tree = await resolve(reader, record.tree, rel)
        if node is not None and node.type == FILE:
            return {"type": "file", "bytes": await _content(reader, node, out)}
        if node is not None and node.type == SYMLINK:
            raise P2pbakError(f"{rel!r} is a symbolic link to {node.target.decode()!r}; "
                              "dump its target or its folder")
        base = rel.rsplit("/", 1)[-1] if rel else ""
        items: list[tuple[str, Node]] = [(base, node)] if node is not None else []
        async for path, child in walk(reader, tree, base):
            items.append((path, child))
        return {"type": "tar", "entries": await _tar(reader, items, out)}
    finally:
        reader.close()
