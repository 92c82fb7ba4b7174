"""Reading a snapshot's trees without restoring: walk, diff of two snapshots, find by name.

Paths are shown as the user backed them up (absolute, restic style). Equal subtree ids mean
equal folders, so `diff` skips them without fetching a byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import load_index
from p2pbak.datapath.paths import shown
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord
from p2pbak.datapath.tree import DIR, Node

ADDED, REMOVED, MODIFIED, TYPE_CHANGED, METADATA = "+", "-", "M", "T", "U"


async def open_reader(repo: Repository, master: bytes) -> BlobReader:
    keys = Keys.derive(master)
    return BlobReader(repo, keys, await load_index(repo, keys))


async def walk(reader: BlobReader, tree: str, rel: str = "") -> AsyncIterator[tuple[str, Node]]:
    """(path below the root tree, node) of every entry below `tree`, depth first, by name."""
    for node in await reader.tree(tree):
        path = f"{rel}/{node.display_name}" if rel else node.display_name
        yield path, node
        if node.type == DIR:
            async for item in walk(reader, node.subtree, path):
                yield item


@dataclass
class Change:
    marker: str  # restic's: + added, - removed, M content, T type, U metadata only
    path: str  # as backed up (absolute); folders end with "/"
    node: Node  # the new node (the old one for a removal)


@dataclass
class DiffStats:
    added: int = 0  # entries
    removed: int = 0
    modified: int = 0  # M, T and U
    bytes_added: int = 0  # file sizes of added files, and the new size of modified ones
    bytes_removed: int = 0
    changes: list[Change] = field(default_factory=list)


def _label(paths: Sequence[str], rel: str, node: Node) -> str:
    text = shown(paths, rel)
    return text + "/" if node.type == DIR and not text.endswith("/") else text


async def _all(reader: BlobReader, paths: Sequence[str], rel: str, node: Node, marker: str,
               out: DiffStats, itself: bool = True) -> None:
    """`node` (unless not `itself`) and everything below it, all added or all removed."""
    items = [(rel, node)] if itself else []
    if node.type == DIR:
        items += [item async for item in walk(reader, node.subtree, rel)]
    for path, n in items:
        out.changes.append(Change(marker, _label(paths, path, n), n))
        if marker == ADDED:
            out.added += 1
            out.bytes_added += n.size
        else:
            out.removed += 1
            out.bytes_removed += n.size


def _changed(old: Node, new: Node) -> str | None:
    if old.type != new.type:
        return TYPE_CHANGED
    if old.content != new.content or old.target != new.target:
        return MODIFIED
    if new.type != DIR and (old.mode, old.mtime_ns) != (new.mode, new.mtime_ns):
        return METADATA
    return None


async def _diff_trees(reader: BlobReader, paths: Sequence[str], old_tree: str, new_tree: str,
                      rel: str, out: DiffStats) -> None:
    if old_tree == new_tree:
        return
    old = {n.name: n for n in await reader.tree(old_tree)} if old_tree else {}
    new = {n.name: n for n in await reader.tree(new_tree)} if new_tree else {}
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        node = b or a
        assert node is not None
        path = f"{rel}/{node.display_name}" if rel else node.display_name
        if a is None or b is None:
            await _all(reader, paths, path, node, ADDED if a is None else REMOVED, out)
            continue
        marker = _changed(a, b)
        if marker == TYPE_CHANGED:  # restic's T for the entry; a folder's content +/-
            out.changes.append(Change(marker, _label(paths, path, b), b))
            out.modified += 1
            await _all(reader, paths, path, a, REMOVED, out, itself=False)
            await _all(reader, paths, path, b, ADDED, out, itself=False)
            continue
        if marker is not None:
            out.changes.append(Change(marker, _label(paths, path, b), b))
            out.modified += 1
            if marker == MODIFIED:
                out.bytes_added += b.size
                out.bytes_removed += a.size
        if a.type == DIR:
            await _diff_trees(reader, paths, a.subtree, b.subtree, path, out)


async def diff(repo: Repository, master: bytes, old: SnapshotRecord,
               new: SnapshotRecord) -> DiffStats:
    """What changed from `old` to `new`, in path order (restic's `diff`)."""
    reader = await open_reader(repo, master)
    out = DiffStats()
    try:
        await _diff_trees(reader, new.paths, old.tree, new.tree, "", out)
    finally:
        reader.close()
    return out


@dataclass
class Found:
    snapshot: SnapshotRecord
    path: str  # as backed up (absolute)
    node: Node


def matches(pattern: str, shown_path: str, name: str) -> bool:
    """restic's find: a pattern with a slash matches the whole path, else the name."""
    if "/" in pattern:
        return fnmatchcase(shown_path, pattern) or fnmatchcase(shown_path, "*/" + pattern)
    return fnmatchcase(name, pattern)


async def find(repo: Repository, master: bytes, snapshots: Sequence[SnapshotRecord],
               patterns: Sequence[str]) -> list[Found]:
    """Every entry of these snapshots whose name (or path) matches any pattern."""
    reader = await open_reader(repo, master)
    out: list[Found] = []
    try:
        for snap in snapshots:
            async for rel, node in walk(reader, snap.tree):
                path = shown(snap.paths, rel)
                if any(matches(p, path, node.display_name) for p in patterns):
                    out.append(Found(snap, path, node))
    finally:
        reader.close()
    return out
