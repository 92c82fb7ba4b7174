"""Snapshot records: sealed, one per backup, listing the root tree and a summary."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import blake3
import msgpack

from p2pbak.datapath.crypto import DamagedBlob, Keys, open_sealed, seal
from p2pbak.datapath.index import load_index
from p2pbak.datapath.paths import in_snapshot
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.tree import DIR, Node
from p2pbak.errors import P2pbakError

SNAPSHOT_VERSION = 1
_AAD = b"p2pbak snapshot v1"


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    time: datetime  # UTC
    host: str
    paths: tuple[str, ...]
    tree: str  # root tree id
    parent: str | None = None
    excludes: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:8]


def encode_snapshot(keys: Keys, time: datetime, host: str, paths: list[str], tree: str,
                    parent: str | None, excludes: list[str],
                    summary: dict[str, Any], tags: Sequence[str] = ()) -> tuple[str, bytes]:
    """(snapshot id, sealed record); the id is BLAKE3 of the sealed bytes."""
    doc = {"v": SNAPSHOT_VERSION, "time": time.astimezone(UTC).isoformat(), "host": host,
           "paths": paths, "tree": tree, "parent": parent, "excludes": excludes,
           "summary": summary}
    if tags:  # absent when empty: untagged records stay byte-identical to older ones
        doc["tags"] = sorted(set(tags))
    sealed = seal(keys.blob, msgpack.packb(doc), _AAD)
    return blake3.blake3(sealed).hexdigest(), sealed


def decode_snapshot(keys: Keys, snapshot_id: str, sealed: bytes) -> SnapshotRecord:
    doc = msgpack.unpackb(open_sealed(keys.blob, sealed, _AAD))
    if doc.get("v") != SNAPSHOT_VERSION:
        raise DamagedBlob(f"snapshot version {doc.get('v')} is not supported; upgrade p2pbak")
    return SnapshotRecord(id=snapshot_id, time=datetime.fromisoformat(doc["time"]),
                          host=doc["host"], paths=tuple(doc["paths"]), tree=doc["tree"],
                          parent=doc["parent"], excludes=tuple(doc["excludes"]),
                          summary=doc["summary"], tags=tuple(doc.get("tags", ())))


async def list_snapshots(repo: Repository, master: bytes) -> list[SnapshotRecord]:
    """Every snapshot, decrypted, oldest first."""
    keys = Keys.derive(master)
    ids = await repo.list_snapshots()
    blobs = await asyncio.gather(*(repo.get_snapshot(i) for i in ids))
    records = [decode_snapshot(keys, i, b) for i, b in zip(ids, blobs, strict=True)]
    return sorted(records, key=lambda r: (r.time, r.id))


async def find_snapshot(repo: Repository, master: bytes, ref: str) -> SnapshotRecord:
    """A snapshot by "latest" or by a unique prefix of its id."""
    records = await list_snapshots(repo, master)
    if ref == "latest":
        if not records:
            raise P2pbakError("there are no snapshots yet; run `p2pbak backup` first")
        return records[-1]
    matches = [r for r in records if r.id.startswith(ref.lower())] if ref else []
    if not matches:
        raise P2pbakError(f"no snapshot {ref!r}; list them with `p2pbak snapshots`")
    if len(matches) > 1:
        raise P2pbakError(f"snapshot prefix {ref!r} is ambiguous ({len(matches)} match); "
                          "give more of the id")
    return matches[0]


def split_path(path: str | None) -> list[bytes]:
    """A path inside a snapshot as raw name components."""
    return [part.encode("utf-8", "surrogateescape")
            for part in (path or "").strip("/").split("/") if part]


async def resolve(reader: BlobReader, root: str, path: str | None) -> tuple[Node | None, str]:
    """The node at `path` (None for the root) and its tree id ("" for a non-directory)."""
    node: Node | None = None
    tree = root
    for part in split_path(path):
        if not tree:
            raise P2pbakError(f"{path!r} is not a directory in this snapshot")
        found = [n for n in await reader.tree(tree) if n.name == part]
        if not found:
            raise P2pbakError(f"{path!r} is not in this snapshot; list it with `p2pbak ls`")
        node = found[0]
        tree = node.subtree if node.type == DIR else ""
    return node, tree


async def list_tree(repo: Repository, master: bytes, snapshot_id: str,
                    path: str | None = None, recursive: bool = False) -> list[Node]:
    """The entries of a directory in a snapshot (or the one entry if `path` is a file);
    with `recursive`, everything below it too, depth first."""
    record = await find_snapshot(repo, master, snapshot_id)
    keys = Keys.derive(master)
    reader = BlobReader(repo, keys, await load_index(repo, keys))
    path = in_snapshot(record.paths, path)
    try:
        node, tree = await resolve(reader, record.tree, path)
        prefix = "/".join(p.decode("utf-8", "surrogateescape") for p in split_path(path))
        if node is not None and node.type != DIR:
            return [replace(node, path=prefix)]
        return await _below(reader, tree, prefix, recursive)
    finally:
        reader.close()


async def _below(reader: BlobReader, tree: str, prefix: str, recursive: bool) -> list[Node]:
    base = prefix + "/" if prefix else ""
    out: list[Node] = []
    for n in await reader.tree(tree):
        out.append(replace(n, path=base + n.display_name))
        if recursive and n.type == DIR:
            out += await _below(reader, n.subtree, base + n.display_name, True)
    return out
