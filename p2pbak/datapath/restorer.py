"""The restorer: snapshot tree -> files, each written to a temporary name and renamed.

The plan (which nodes; which blobs of which packs go to which files at which offsets) is
made first, so conflicts are refused before anything is written; the data is then written
pack by pack (datapath.packrestore).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import Index, load_index
from p2pbak.datapath.packrestore import (
    DEFAULT_WINDOW,
    Plan,
    RestoreFile,
    temp_name,
    write_files,
)
from p2pbak.datapath.paths import in_snapshot
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


@dataclass(frozen=True, slots=True)
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
    try:
        with os.scandir(target) as entries:
            if next(entries, None) is None:
                return  # an empty target: nothing can be in the way
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise P2pbakError(f"{target} is not a directory; restore elsewhere") from None
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
    """The synchronous parts of a restore, run in worker threads: the plan of the files
    (datapath.packrestore), the folders and symlinks (while the first packs are fetched),
    the renames after the data. Paths are strings: pathlib costs too much per file."""

    def __init__(self, target: Path, result: RestoreResult) -> None:
        self.target, self.result = str(target), result
        self.plan = Plan()
        self.dirs: list[tuple[str, Node]] = []

    def _error(self, dest: str, exc: OSError | P2pbakError | str) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        self.result.errors.append(f"{dest}: {msg}")

    def _dest(self, item: _Item) -> str:
        return os.path.join(self.target, *map(os.fsdecode, item.rel))

    def plan_files(self, items: list[_Item], index: Index) -> None:
        for item in items:
            if item.node.type == FILE:
                self.plan.add(index, RestoreFile(self._dest(item), item.node))

    def make(self, items: list[_Item], kind: str) -> None:
        """The folders (parents first, as planned), or the symlinks: the files need only
        the folders, so the symlinks are made while the data is written."""
        for item in items:
            if item.node.type != kind:
                continue
            dest = self._dest(item)
            try:
                if kind == DIR:
                    os.makedirs(dest, mode=0o700, exist_ok=True)
                    self.dirs.append((dest, item.node))
                else:
                    self._symlink(dest, item.node)
            except OSError as exc:
                self._error(dest, exc)

    def finish(self, state: RestoreProgress) -> None:
        """One sync for all the data, then the renames; folders last."""
        os.sync()
        files = self.plan.files
        # Renames are kernel work (no GIL): both cores do them, each on its own run of
        # the plan (the walk's order, so mostly in different folders).
        step = -(-len(files) // _PLACERS) or 1
        with ThreadPoolExecutor(_PLACERS, thread_name_prefix="place") as pool:
            list(pool.map(_place_all, (files[i:i + step] for i in range(0, len(files), step))))
        for file in files:
            if file.error:
                self._error(file.dest, file.error)
                continue
            self.result.files_restored += 1
            self.result.bytes_restored += file.size
            state.files_done += not file.node.content  # the others as written
        # Deepest first, so a read-only directory is finished only when its content is.
        for dest, node in sorted(self.dirs, key=lambda d: d[0].count(os.sep), reverse=True):
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
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file.tmp)

    def _symlink(self, dest: str, node: Node) -> None:
        # Making a symlink is atomic already: a temporary name only to replace one.
        try:
            os.symlink(node.target, os.fsencode(dest))
        except FileExistsError:
            self._replace_symlink(dest, node)
        else:
            os.utime(dest, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        self.result.symlinks_restored += 1

    def _replace_symlink(self, dest: str, node: Node) -> None:
        tmp = temp_name(dest)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(node.target, os.fsencode(tmp))
        try:
            os.utime(tmp, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


_PLACERS = 2  # threads renaming files into place


async def _after(first: asyncio.Future[None], fn: Callable[..., None], *args: object) -> None:
    """fn(*args) in a thread once `first` has succeeded."""
    await first
    await asyncio.to_thread(fn, *args)


def _place_all(files: list[RestoreFile]) -> None:
    """Rename each complete file into place; an incomplete one is removed (its error on
    the file)."""
    for file in files:
        try:
            if file.pending and not file.error:
                file.error = "not all of its data could be fetched"
            if not file.error:
                _place(file)
                continue
        except OSError as exc:
            file.error = exc.strerror or str(exc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file.tmp)


def _place(file: RestoreFile) -> None:
    if not file.created:  # an empty file: no blob ever opened it
        node = file.node
        fd = os.open(file.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, node.mode)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        finally:
            os.close(fd)
    os.replace(file.tmp, file.dest)


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
        reader.close()  # the tree packs it keeps are not needed for the data
        _check_conflicts(target, items, overwrite)
        files = [i.node for i in items if i.node.type == FILE]
        state = RestoreProgress(files_total=len(files), bytes_total=sum(f.size for f in files))
        target.mkdir(parents=True, exist_ok=True)
        writer = _Writer(target, result)
        await asyncio.to_thread(writer.plan_files, items, index)
        del index  # planned: the data needs only the plan
        reader.index = Index()  # (nor the reader, closed above)
        # The folders are made while the first packs are fetched; no file is written before.
        # The symlinks come after the folders, while the data is written.
        dirs = asyncio.ensure_future(asyncio.to_thread(writer.make, items, DIR))
        links = asyncio.ensure_future(_after(dirs, writer.make, items, SYMLINK))
        del items, files  # the plan holds what the data needs; `make`, the rest
        try:
            await write_files(repo, keys, writer.plan, state, progress, window, ready=dirs)
            await links
        except BaseException:
            await asyncio.gather(dirs, links, return_exceptions=True)
            writer.discard()
            raise
        await asyncio.to_thread(writer.finish, state)
        if progress is not None:
            progress(state)
    finally:
        reader.close()
    result.duration = round(time.monotonic() - started, 3)
    return result
