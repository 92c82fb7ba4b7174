"""The archiver: walk the paths, chunk new files, seal blobs into packs, save a snapshot.

A pipeline of bounded stages, so every core is busy at once: the walk (one thread) hands
the files to read to `FILE_WORKERS` threads, in batches, a bounded number ahead; they read,
chunk, hash, compress and seal (zstd, BLAKE3 and the cipher release the GIL); finished
packs go to the repository from the event loop, `uploads` at a time, where erasure coding
(zfec releases the GIL too) and the uploads overlap the reading of the next files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from p2pbak.datapath.blobs import BlobType, seal_blob
from p2pbak.datapath.chunker import file_chunks
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.excludes import excluded
from p2pbak.datapath.index import Index, encode_index_rows, load_index
from p2pbak.datapath.pack import DEFAULT_PACK_SIZE, Pack, PackWriter
from p2pbak.datapath.progress import Progress
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord, encode_snapshot, find_snapshot, list_snapshots
from p2pbak.datapath.together import both
from p2pbak.datapath.tree import DIR, FILE, Node, encode_tree, node_from_stat
from p2pbak.datapath.uploads import Checkpoints, Uploader
from p2pbak.errors import P2pbakError, UnreadableFile

T = TypeVar("T")


BackupProgress = Progress


@dataclass
class BackupSummary:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    blobs_added: int = 0
    bytes_read: int = 0  # file bytes read and chunked
    bytes_added: int = 0  # sealed bytes of new blobs
    packs_added: int = 0
    total_files: int = 0
    total_bytes: int = 0  # size of every file in the snapshot
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackupResult:
    snapshot_id: str | None  # None on a dry run
    summary: BackupSummary
    errors: list[UnreadableFile] = field(default_factory=list)  # files it could not read
    warnings: list[str] = field(default_factory=list)  # special files skipped
    parent: str | None = None


FILE_WORKERS = max(2, os.cpu_count() or 1)  # threads reading and sealing files
FILES_PER_JOB = 32  # small files go to a worker in batches: a hand-off per file costs
BYTES_PER_JOB = 8 * 1024 * 1024  # ... but a batch stays about one chunk's worth of reading
JOBS_AHEAD = 2 * FILE_WORKERS  # batches handed out and not finished, at most
FIRST_PACK_SIZE = 4 * 1024 * 1024  # then 8, then 16 MiB: the uploads start early


class _Walker:
    """The synchronous part of a backup: the walk in one thread, the files in a pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keys: Keys, index: Index,
                 parent_reader: BlobReader | None, uploader: Uploader | None,
                 excludes: Sequence[str], pack_size: int,
                 progress: Callable[[BackupProgress], None] | None) -> None:
        self.loop, self.keys, self.index = loop, keys, index
        self.parent_reader, self.uploader = parent_reader, uploader
        self.excludes = list(excludes)
        self.data_pack = PackWriter(pack_size, FIRST_PACK_SIZE)
        self.tree_pack = PackWriter(pack_size)
        self.pending: set[str] = set()
        self.new_packs: list[tuple[str, list[list[object]]]] = []  # (id, Pack.rows)
        self.summary = BackupSummary()
        self.errors: list[UnreadableFile] = []
        self.warnings: list[str] = []
        self.state = BackupProgress()
        self.on_progress = progress
        self.totals_lock = threading.Lock()
        self.lock = threading.Lock()  # the packs, `pending` and the summary
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(FILE_WORKERS, thread_name_prefix="backup-file")
        self.ahead = threading.BoundedSemaphore(JOBS_AHEAD)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _report(self, path: str, nbytes: int = 0, files: int = 0) -> None:
        with self.totals_lock:
            self.state.bytes_done += nbytes
            self.state.files_done += files
            if self.on_progress is not None:
                self.state.current = path
                self.on_progress(self.state)

    # Blobs and packs.
    def _save_blob(self, kind: BlobType, data: bytes | memoryview) -> str:
        if self.stop.is_set():
            raise P2pbakError("backup interrupted")
        blob_id = self.keys.chunk_id_of(data)
        with self.lock:
            if blob_id in self.index or blob_id in self.pending:
                return blob_id
            self.pending.add(blob_id)  # claimed: another worker's repeat is not sealed
        sealed = seal_blob(self.keys, kind, blob_id, data)
        writer = self.data_pack if kind == BlobType.DATA else self.tree_pack
        with self.lock:
            writer.add(kind, blob_id, sealed, len(data))
            self.summary.blobs_added += 1
            self.summary.bytes_added += len(sealed)
            pack = self._seal_pack(writer) if writer.full else None
        if pack is not None:
            self._submit(pack)  # outside the lock: it waits while `uploads` are running
        return blob_id

    def _seal_pack(self, writer: PackWriter) -> Pack | None:
        if not len(writer):
            return None
        pack = writer.finish(self.keys)
        self.index.add_pack(pack.pack_id, pack.entries)
        self.pending.difference_update(e.blob_id for e in pack.entries)
        self.new_packs.append((pack.pack_id, pack.rows))
        self.summary.packs_added += 1
        return pack

    def _submit(self, pack: Pack) -> None:
        if self.uploader is not None:
            self._call(self.uploader.submit(pack))

    def finish(self) -> None:
        for writer in (self.data_pack, self.tree_pack):
            pack = self._seal_pack(writer)
            if pack is not None:
                self._submit(pack)

    def close(self) -> None:
        self.stop.set()  # queued batches end at once, running ones at their next chunk
        self.pool.shutdown(wait=True, cancel_futures=True)

    # The walk.
    def _parent_tree(self, parent: Node | None) -> list[Node] | None:
        """The parent snapshot's entries of a folder, None if it had none or is unreadable."""
        if self.parent_reader is None or parent is None or parent.type != DIR:
            return None
        try:
            nodes = self.parent_reader.tree_now(parent.subtree)
            if nodes is None:  # its pack is not here yet: fetched from the event loop
                nodes = self._call(self.parent_reader.tree(parent.subtree))
        except P2pbakError:
            return None  # an unreadable parent tree only costs re-reading the files
        return nodes

    def root(self, paths: Sequence[Path], parent_root: str | None) -> str:
        parents = _by_name(self._parent_tree(Node(b"", DIR, 0, 0, subtree=parent_root))
                           if parent_root else None)
        nodes: list[Node] = []
        for name, path in _root_names(paths):
            st = _lstat_or_fail(path)
            node = self._entry(str(path), name, st, parents.get(name))
            if node is not None:
                nodes.append(node)
        return self._save_blob(BlobType.TREE, encode_tree(nodes))

    def _entry(self, path: str, name: bytes, st: os.stat_result,
               parent: Node | None) -> Node | None:
        if stat.S_ISDIR(st.st_mode):
            return self._dir(path, name, st, parent)
        if stat.S_ISREG(st.st_mode):
            return self._file(path, name, st, parent)
        if stat.S_ISLNK(st.st_mode):
            try:
                return node_from_stat(name, st, target=os.readlink(os.fsencode(path)))
            except OSError as exc:
                self.errors.append(UnreadableFile(path, exc.strerror or str(exc)))
                return None
        self.warnings.append(f"{path}: special file skipped")
        return None

    def _dir(self, path: str, name: bytes, st: os.stat_result, parent: Node | None) -> Node:
        old = self._parent_tree(parent)
        before = _by_name(old)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.errors.append(UnreadableFile(path, exc.strerror or str(exc)))
            entries = []
        jobs = _Jobs(self)
        for entry in entries:
            child = entry.path  # a string: a Path per file costs more than its stat
            if excluded(child, self.excludes):
                continue
            try:
                child_st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self.errors.append(UnreadableFile(child, exc.strerror or str(exc)))
                continue
            child_name = os.fsencode(entry.name)
            was = before.get(child_name)
            if stat.S_ISREG(child_st.st_mode) and not self._unchanged(was, child_st):
                jobs.add(child, child_name, child_st, was)
            else:
                jobs.done(self._entry(child, child_name, child_st, was))
        nodes = jobs.nodes()
        if old is not None and parent is not None and nodes == old:
            tree = parent.subtree  # equal entries encode to the same blob, stored already
        else:
            tree = self._save_blob(BlobType.TREE, encode_tree(nodes))
        if parent is None or parent.type != DIR:
            self.summary.dirs_new += 1
        elif parent.subtree == tree:
            self.summary.dirs_unmodified += 1
        else:
            self.summary.dirs_changed += 1
        return node_from_stat(name, st, subtree=tree)

    def _unchanged(self, parent: Node | None, st: os.stat_result) -> bool:
        return (parent is not None and parent.same_file(st)
                and all(c in self.index for c in parent.content))

    def _file(self, path: str, name: bytes, st: os.stat_result,
              parent: Node | None) -> Node | None:
        """A regular file's node: from its parent's when unchanged (in the walk), else
        read, chunked and sealed (in a worker of the pool)."""
        if self._unchanged(parent, st):
            with self.lock:
                self.summary.total_files += 1
                self.summary.files_unmodified += 1
                self.summary.total_bytes += parent.size
            self._report(path, parent.size, 1)
            if parent.mode == stat.S_IMODE(st.st_mode):
                return parent  # the same node: its folder's tree may be the same blob
            return node_from_stat(name, st, content=parent.content)
        content: list[str] = []
        size = 0
        try:
            for chunk in file_chunks(path, st.st_size):
                content.append(self._save_blob(BlobType.DATA, chunk))
                size += len(chunk)
                self._report(path, len(chunk))
        except OSError as exc:
            with self.lock:
                self.errors.append(UnreadableFile(path, exc.strerror or str(exc)))
            return None
        with self.lock:
            self.summary.total_files += 1
            self.summary.bytes_read += size
            self.summary.total_bytes += size
            if parent is not None and parent.type == FILE:
                self.summary.files_changed += 1
            else:
                self.summary.files_new += 1
        self._report(path, 0, 1)
        return node_from_stat(name, st, size, content=tuple(content))

    def read_files(self, batch: list[_FileJob]) -> list[Node | None]:
        """One batch of files to read (runs in the pool; frees its slot when done)."""
        try:
            return [self._file(*job) for job in batch]
        finally:
            self.ahead.release()


_FileJob = tuple[str, bytes, os.stat_result, "Node | None"]


class _Jobs:
    """The nodes of one folder in order: those made in the walk, and batches of files
    handed to the pool (at most JOBS_AHEAD batches out at once: the walk waits)."""

    def __init__(self, walker: _Walker) -> None:
        self.walker = walker
        self.out: list[Node | Future[list[Node | None]] | None] = []
        self.batch: list[_FileJob] = []
        self.batch_bytes = 0

    def done(self, node: Node | None) -> None:
        self.out.append(node)

    def add(self, path: str, name: bytes, st: os.stat_result, parent: Node | None) -> None:
        self.batch.append((path, name, st, parent))
        self.batch_bytes += st.st_size
        if len(self.batch) >= FILES_PER_JOB or self.batch_bytes >= BYTES_PER_JOB:
            self._hand_out()

    def _hand_out(self) -> None:
        if not self.batch:
            return
        walker = self.walker
        while not walker.ahead.acquire(timeout=0.5):
            if walker.stop.is_set():
                raise P2pbakError("backup interrupted")
        try:
            self.out.append(walker.pool.submit(walker.read_files, self.batch))
        except BaseException:
            walker.ahead.release()
            raise
        self.batch, self.batch_bytes = [], 0

    def nodes(self) -> list[Node]:
        self._hand_out()
        nodes: list[Node] = []
        for item in self.out:
            if isinstance(item, Future):
                nodes.extend(n for n in item.result() if n is not None)
            elif item is not None:
                nodes.append(item)
        return nodes


def _by_name(nodes: list[Node] | None) -> dict[bytes, Node]:
    return {n.name: n for n in nodes or ()}


def _root_names(paths: Sequence[Path]) -> list[tuple[bytes, Path]]:
    """Each backed-up path under its base name in the root tree, made unique."""
    out: list[tuple[bytes, Path]] = []
    used: set[bytes] = set()
    for path in paths:
        base = os.fsencode(path.name or "root")
        name, n = base, 0
        while name in used:
            n += 1
            name = base + b"-%d" % n
        used.add(name)
        out.append((name, path))
    return out


def _lstat_or_fail(path: Path) -> os.stat_result:
    try:
        return path.lstat()
    except OSError as exc:
        raise P2pbakError(f"cannot back up {path}: {exc.strerror or exc}") from None


def _scan_totals(paths: Sequence[Path], excludes: Sequence[str],
                 stop: threading.Event) -> tuple[int, int]:
    """(files, bytes) the backup will cover, for progress totals; stat only, no reads."""
    files = size = 0
    stack: list[str] = []
    for path in paths:  # the walk's own types from scandir: no stat of each folder
        with contextlib.suppress(OSError):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                files, size = files + 1, size + st.st_size
            elif stat.S_ISDIR(st.st_mode):
                stack.append(str(path))
    while stack and not stop.is_set():
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if excluded(e.path, excludes):
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        files, size = files + 1, size + e.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return files, size


async def _choose_parent(repo: Repository, master: bytes, parent: str | None, host: str,
                         paths: list[str]) -> SnapshotRecord | None:
    if parent is not None:
        return await find_snapshot(repo, master, parent) if parent else None
    same = [r for r in await list_snapshots(repo, master)
            if r.host == host and sorted(r.paths) == sorted(paths)]
    return same[-1] if same else None


async def backup(repo: Repository, master: bytes, paths: Sequence[Path], *,
                 excludes: Sequence[str] = (), host: str | None = None,
                 parent: str | None = None, dry_run: bool = False,
                 progress: Callable[[BackupProgress], None] | None = None,
                 pack_size: int = DEFAULT_PACK_SIZE, uploads: int = 2,
                 tags: Sequence[str] = (), totals: bool = True) -> BackupResult:
    """Back up `paths`; parent None picks the latest snapshot of the same host and paths,
    "" forces a full read. `totals`: count the files and bytes ahead for the progress
    (a second walk of the tree, on another thread: off when no one shows them)."""
    started = time.monotonic()
    if not paths:
        raise P2pbakError("nothing to back up: give at least one path")
    roots = [Path(os.path.abspath(p)) for p in paths]
    for root in roots:
        _lstat_or_fail(root)
    host = host or socket.gethostname()
    keys = Keys.derive(master)
    names = [str(r) for r in roots]
    index, previous = await both(load_index(repo, keys),  # their round trips at once
                                  _choose_parent(repo, master, parent, host, names))
    reader = BlobReader(repo, keys, index) if previous else None
    checkpoints = Checkpoints(repo, keys)

    async def committed(pack: Pack) -> None:
        await checkpoints.add(pack)
        walker.state.packs_saved += 1  # what an interrupted run leaves for the next
        walker.state.bytes_saved += len(pack.data)
        walker._report(walker.state.current)  # status lines go on while the last packs upload

    uploader = None if dry_run else Uploader(repo, max(1, uploads), committed)
    loop = asyncio.get_running_loop()
    walker = _Walker(loop, keys, index, reader, uploader, excludes, pack_size, progress)
    if totals:
        scan = loop.run_in_executor(None, _scan_totals, roots, excludes, walker.stop)
        scan.add_done_callback(lambda f: _set_totals(walker, f))
    try:
        try:
            tree = await asyncio.to_thread(walker.root, roots,
                                           previous.tree if previous else None)
        except BaseException:
            if uploader is not None:
                uploader.cancel()  # first: a worker may be waiting for an upload slot
            raise
        finally:
            await asyncio.to_thread(walker.close)
        await asyncio.to_thread(walker.finish)
        if uploader is not None:
            await uploader.drain()
    except BaseException:
        if uploader is not None:
            uploader.cancel()
        raise
    finally:
        walker.stop.set()  # the scan stops; after a failure, the worker at its next chunk
        if reader is not None:
            reader.close()
    summary = walker.summary
    summary.duration = round(time.monotonic() - started, 3)
    result = BackupResult(None, summary, walker.errors, walker.warnings,
                          previous.id if previous else None)
    if dry_run:
        return result
    if walker.new_packs:
        index_id, blob = encode_index_rows(keys, walker.new_packs)
        await repo.put_index(index_id, blob)
    result.snapshot_id, record = encode_snapshot(
        keys, datetime.now(UTC), host, names, tree, result.parent,
        list(excludes), summary.as_dict(), tags)
    await repo.put_snapshot(result.snapshot_id, record)
    await checkpoints.drop()  # the index written above lists every one of their packs
    return result


def _set_totals(walker: _Walker, future: asyncio.Future[tuple[int, int]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    with walker.totals_lock:
        walker.state.files_total, walker.state.bytes_total = future.result()

