"""Tree blobs: one per directory, its entries sorted by name, encoded deterministically.

Equal directories give equal bytes, hence equal ids, so an unchanged directory is stored
once. Names are raw bytes (os.fsencode), so any file name round-trips.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

import msgpack

from p2pbak.datapath.crypto import DamagedBlob

TREE_VERSION = 1
FILE, DIR, SYMLINK = "file", "dir", "symlink"


@dataclass(frozen=True, slots=True)  # one per file of a snapshot: no __dict__ each
class Node:
    name: bytes
    type: str  # FILE, DIR or SYMLINK
    mode: int  # permission bits (stat.S_IMODE)
    mtime_ns: int
    size: int = 0
    inode: int = 0
    content: tuple[str, ...] = ()  # chunk ids, files only
    subtree: str = ""  # tree id, directories only
    target: bytes = b""  # symlinks only
    path: str = field(default="", compare=False)  # path in the snapshot, set when listing

    @property
    def display_name(self) -> str:
        return os.fsdecode(self.name)

    def same_file(self, st: os.stat_result) -> bool:
        """Unchanged since this node was made: size, mtime and inode all equal."""
        return (self.type == FILE and self.size == st.st_size
                and self.mtime_ns == st.st_mtime_ns and self.inode == st.st_ino)


def node_from_stat(name: bytes, st: os.stat_result, size: int | None = None,
                   **extra: object) -> Node:
    """The node of `st`; `size`: the bytes actually read, when not the stat's."""
    if stat.S_ISDIR(st.st_mode):
        kind = DIR
    elif stat.S_ISLNK(st.st_mode):
        kind = SYMLINK
    else:
        kind = FILE
    if size is None or kind != FILE:
        size = st.st_size if kind == FILE else 0
    return Node(name=name, type=kind, mode=stat.S_IMODE(st.st_mode), mtime_ns=st.st_mtime_ns,
                size=size, inode=st.st_ino, **extra)  # type: ignore[arg-type]


def _node_doc(node: Node) -> dict[str, object]:
    doc: dict[str, object] = {"name": node.name, "type": node.type, "mode": node.mode,
                              "mtime": node.mtime_ns, "inode": node.inode}
    if node.type == FILE:
        doc["size"] = node.size
        doc["content"] = [bytes.fromhex(c) for c in node.content]
    elif node.type == DIR:
        doc["subtree"] = bytes.fromhex(node.subtree)
    else:
        doc["target"] = node.target
    return doc


def encode_tree(nodes: list[Node]) -> bytes:
    ordered = sorted(nodes, key=lambda n: n.name)
    return msgpack.packb({"v": TREE_VERSION, "nodes": [_node_doc(n) for n in ordered]})


def _node(d: dict[str, Any]) -> Node:
    # by type: a re-run decodes every folder of the parent snapshot, files the most
    if d["type"] == FILE:
        return Node(d["name"], FILE, d["mode"], d["mtime"], d.get("size", 0), d["inode"],
                    tuple([c.hex() for c in d.get("content", ())]))
    return Node(d["name"], d["type"], d["mode"], d["mtime"], d.get("size", 0), d["inode"],
                (), d.get("subtree", b"").hex(), d.get("target", b""))


def decode_tree(data: bytes) -> list[Node]:
    try:
        doc = msgpack.unpackb(data)
        if doc["v"] != TREE_VERSION:
            raise DamagedBlob(f"tree version {doc['v']} is not supported; upgrade p2pbak")
        return [_node(d) for d in doc["nodes"]]
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        raise DamagedBlob(f"tree blob is damaged ({type(exc).__name__})") from None
