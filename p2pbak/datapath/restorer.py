"""The restorer: snapshot tree -> files, each written to a temporary name and renamed.

The plan (which nodes, which packs in which order) is made first, so conflicts are
refused before anything is written and packs are fetched ahead in the order of use.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import load_index
from p2pbak.datapath.paths import in_snapshot
from p2pbak.datapath.progress import Progress
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord, find_snapshot
from p2pbak.datapath.tree import DIR, FILE, SYMLINK, Node
from p2pbak.errors import P2pbakError

T = TypeVar("T")


RestoreProgress = Progress


@dataclass
class RestoreResult:
    snapshot_id: str
    files_restored: int = 0
    dirs_restored: int = 0
    symlinks_restored: int = 0
    bytes_restored: int = 0
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0


@dataclass(frozen=True)
class _Item:
    rel: tuple[bytes, ...]  # path components below the target
    node: Node


def _normalise_includes(record: SnapshotRecord, include: Sequence[str]) -> list[str]:
    """Include patterns relative to the snapshot root; the backed-up (absolute) paths work
    too, with or without their leading slash."""
    return [p for p in (in_snapshot(record.paths, pattern) for pattern in include) if p]


def _matches(rel: tuple[bytes, ...], patterns: list[str]) -> bool:
    path = "/".join(os.fsdecode(p) for p in rel)
    return any(fnmatchcase(path, p) for p in patterns)


async def _plan(reader: BlobReader, tree: str, rel: tuple[bytes, ...], patterns: list[str],
                take_all: bool, out: list[_Item]) -> bool:
    """Append the nodes to restore below `tree`; True if any was."""
    found = False
    for node in await reader.tree(tree):
        path = (*rel, node.name)
        if os.sep.encode() in node.name or node.name in (b"", b".", b".."):
            raise P2pbakError(f"snapshot holds an unsafe name {node.name!r}; refusing it")
        wanted = take_all or _matches(path, patterns)
        if node.type == DIR:
            mark = len(out)
            out.append(_Item(path, node))
            if not await _plan(reader, node.subtree, path, patterns, wanted, out) and not wanted:
                del out[mark]
                continue
            found = True
        elif wanted:
            out.append(_Item(path, node))
            found = True
    return found


def _check_conflicts(target: Path, items: list[_Item], overwrite: bool) -> None:
    for item in items:
        dest = target.joinpath(*map(os.fsdecode, item.rel))
        if not os.path.lexists(dest):
            continue
        if item.node.type == DIR:
            if not dest.is_dir() or dest.is_symlink():
                raise P2pbakError(f"{dest} exists and is not a directory; move it away first")
        elif not overwrite:
            raise P2pbakError(f"{dest} already exists; restore elsewhere or pass --overwrite")
        elif dest.is_dir() and not dest.is_symlink():
            raise P2pbakError(f"{dest} is a directory in the way of a file; move it away first")


class _Writer:
    """The synchronous part of a restore, run in a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reader: BlobReader, target: Path,
                 result: RestoreResult, state: RestoreProgress,
                 progress: Callable[[RestoreProgress], None] | None) -> None:
        self.loop, self.reader, self.target = loop, reader, target
        self.result, self.state, self.on_progress = result, state, progress

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _report(self, path: Path) -> None:
        if self.on_progress is not None:
            self.state.current = str(path)
            self.on_progress(self.state)

    def run(self, items: list[_Item]) -> None:
        dirs: list[tuple[Path, Node]] = []
        for item in items:
            dest = self.target.joinpath(*map(os.fsdecode, item.rel))
            try:
                if item.node.type == DIR:
                    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
                    dirs.append((dest, item.node))
                elif item.node.type == FILE:
                    self._file(dest, item.node)
                elif item.node.type == SYMLINK:
                    self._symlink(dest, item.node)
            except (OSError, P2pbakError) as exc:
                msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self.result.errors.append(f"{dest}: {msg}")
        # Deepest first, so a read-only directory is finished only when its content is.
        for dest, node in sorted(dirs, key=lambda d: len(d[0].parts), reverse=True):
            try:
                os.chmod(dest, node.mode)
                os.utime(dest, ns=(node.mtime_ns, node.mtime_ns))
                self.result.dirs_restored += 1
            except OSError as exc:
                self.result.errors.append(f"{dest}: {exc.strerror or exc}")

    def _temp(self, dest: Path) -> Path:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return dest.with_name(f".{dest.name}.p2pbak-{os.getpid()}.tmp")

    def _file(self, dest: Path, node: Node) -> None:
        tmp = self._temp(dest)
        try:
            with open(tmp, "wb") as f:
                for chunk_id in node.content:
                    data = self._call(self.reader.blob(chunk_id))
                    f.write(data)
                    self.state.bytes_done += len(data)
                    self.result.bytes_restored += len(data)
                    self._report(dest)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, node.mode)
            os.utime(tmp, ns=(node.mtime_ns, node.mtime_ns))
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.result.files_restored += 1
        self.state.files_done += 1
        self._report(dest)

    def _symlink(self, dest: Path, node: Node) -> None:
        tmp = self._temp(dest)
        tmp.unlink(missing_ok=True)
        os.symlink(node.target, os.fsencode(tmp))
        try:
            os.utime(tmp, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.result.symlinks_restored += 1


async def restore(repo: Repository, master: bytes, snapshot_id: str, target: Path, *,
                  include: Sequence[str] = (), overwrite: bool = False,
                  progress: Callable[[RestoreProgress], None] | None = None) -> RestoreResult:
    """Restore a snapshot ("latest", an id or a prefix) into `target`."""
    started = time.monotonic()
    record = await find_snapshot(repo, master, snapshot_id)
    keys = Keys.derive(master)
    index = await load_index(repo, keys)
    reader = BlobReader(repo, keys, index)
    target = Path(os.path.abspath(target))
    result = RestoreResult(record.id)
    try:
        items: list[_Item] = []
        patterns = _normalise_includes(record, include)
        await _plan(reader, record.tree, (), patterns, not patterns, items)
        if include and not items:
            raise P2pbakError("nothing in the snapshot matches the include patterns")
        _check_conflicts(target, items, overwrite)
        files = [i.node for i in items if i.node.type == FILE]
        reader.plan(_pack_order(reader, files))
        state = RestoreProgress(files_total=len(files), bytes_total=sum(f.size for f in files))
        target.mkdir(parents=True, exist_ok=True)
        writer = _Writer(asyncio.get_running_loop(), reader, target, result, state, progress)
        await asyncio.to_thread(writer.run, items)
    finally:
        reader.close()
    result.duration = round(time.monotonic() - started, 3)
    return result


def _pack_order(reader: BlobReader, files: list[Node]) -> list[str]:
    order: dict[str, None] = {}
    for node in files:
        for chunk_id in node.content:
            loc = reader.index.get(chunk_id)
            if loc is not None:
                order.setdefault(loc.pack_id)
    return list(order)
