"""The restorer: snapshot tree -> files, each written to a temporary name and renamed.

The plan (which nodes; which blobs of which packs go to which files at which offsets) is
made first, so conflicts are refused before anything is written; the data is then written
pack by pack (datapath.packrestore).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import Index, load_index
from p2pbak.datapath.packrestore import DEFAULT_WINDOW, Plan, RestoreFile, write_files
from p2pbak.datapath.progress import Progress
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord, find_snapshot
from p2pbak.datapath.tree import DIR, FILE, SYMLINK, Node
from p2pbak.errors import P2pbakError

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
    """Include patterns relative to the snapshot root; original absolute paths work too."""
    out = []
    for pattern in include:
        for original in record.paths:
            if pattern == original or pattern.startswith(original.rstrip("/") + "/"):
                pattern = os.path.basename(original.rstrip("/")) + pattern[len(original):]
                break
        out.append(pattern.strip("/"))
    return [p for p in out if p]


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
    """The synchronous parts of a restore, run in a worker thread: the folders, symlinks and
    the plan of the files before the data (datapath.packrestore), the renames after."""

    def __init__(self, target: Path, index: Index, result: RestoreResult) -> None:
        self.target, self.index, self.result = target, index, result
        self.plan = Plan()
        self.dirs: list[tuple[Path, Node]] = []

    def _error(self, dest: Path, exc: OSError | P2pbakError | str) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        self.result.errors.append(f"{dest}: {msg}")

    def prepare(self, items: list[_Item]) -> None:
        for item in items:
            dest = self.target.joinpath(*map(os.fsdecode, item.rel))
            try:
                if item.node.type == DIR:
                    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
                    self.dirs.append((dest, item.node))
                elif item.node.type == FILE:
                    self.plan.add(self.index, RestoreFile(dest, _temp(dest), item.node))
                elif item.node.type == SYMLINK:
                    self._symlink(dest, item.node)
            except (OSError, P2pbakError) as exc:
                self._error(dest, exc)

    def finish(self, state: RestoreProgress) -> None:
        """One sync for all the data, then modes, times and renames; folders last."""
        os.sync()
        for file in self.plan.files:
            try:
                if file.pending and not file.error:
                    file.error = "not all of its data could be fetched"
                if not file.error:
                    self._place(file)
                    self.result.files_restored += 1
                    self.result.bytes_restored += file.size
                    state.files_done += 1
                    continue
            except OSError as exc:
                file.error = exc.strerror or str(exc)
            file.tmp.unlink(missing_ok=True)
            self._error(file.dest, file.error)
        # Deepest first, so a read-only directory is finished only when its content is.
        for dest, node in sorted(self.dirs, key=lambda d: len(d[0].parts), reverse=True):
            try:
                os.chmod(dest, node.mode)
                os.utime(dest, ns=(node.mtime_ns, node.mtime_ns))
                self.result.dirs_restored += 1
            except OSError as exc:
                self._error(dest, exc)

    def discard(self) -> None:
        """An interrupted restore leaves no temporary file behind."""
        for file in self.plan.files:
            if file.created:
                file.tmp.unlink(missing_ok=True)

    def _place(self, file: RestoreFile) -> None:
        if not file.created:  # an empty file: no blob ever opened it
            file.tmp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            file.tmp.write_bytes(b"")
        node = file.node
        os.chmod(file.tmp, node.mode)
        os.utime(file.tmp, ns=(node.mtime_ns, node.mtime_ns))
        os.replace(file.tmp, file.dest)

    def _symlink(self, dest: Path, node: Node) -> None:
        tmp = _temp(dest)
        tmp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        os.symlink(node.target, os.fsencode(tmp))
        try:
            os.utime(tmp, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.result.symlinks_restored += 1


def _temp(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.p2pbak-{os.getpid()}.tmp")


async def restore(repo: Repository, master: bytes, snapshot_id: str, target: Path, *,
                  include: Sequence[str] = (), overwrite: bool = False,
                  progress: Callable[[RestoreProgress], None] | None = None,
                  window: int = DEFAULT_WINDOW) -> RestoreResult:
    """Restore a snapshot ("latest", an id or a prefix) into `target`, fetching `window`
    data packs at a time."""
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
        state = RestoreProgress(files_total=len(files), bytes_total=sum(f.size for f in files))
        target.mkdir(parents=True, exist_ok=True)
        writer = _Writer(target, index, result)
        await asyncio.to_thread(writer.prepare, items)
        try:
            await write_files(repo, keys, writer.plan, state, progress, window)
        except BaseException:
            writer.discard()
            raise
        await asyncio.to_thread(writer.finish, state)
        if progress is not None:
            progress(state)
    finally:
        reader.close()
    result.duration = round(time.monotonic() - started, 3)
    return result
