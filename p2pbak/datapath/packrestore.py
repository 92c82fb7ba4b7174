"""Writing the files of a restore pack by pack, as restic's file restorer does.

The plan maps every data pack to the blobs it holds and each blob to every (file, offset)
that needs it, offsets computed from the index alone. Packs are then fetched `window` at a
time; each is opened (decrypt, decompress, verify) in slices of its blobs on a pool of
threads and every blob goes to every file that needs it with os.pwrite, so memory is
bounded by the window, not by the snapshot, and a blob shared by many files is opened
once. Files are written under temporary names; once all data is written there is one
os.sync, then each file gets its mode and times and is renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate

from p2pbak.datapath.blobs import BlobType, open_blob
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import Index
from p2pbak.datapath.progress import Progress
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.tree import Node
from p2pbak.errors import P2pbakError

# Packs in flight (fetched, being opened or written): one per core writing and one being
# fetched keeps both busy on two cores; each costs about two packs of memory.
DEFAULT_WINDOW = 3
PREALLOCATE_MIN = 1024 * 1024  # smaller files are just written (pwrite extends them)
_MAX_OPEN = 64  # file descriptors one pack job keeps open at most
# A pack of many small files is written in slices of its blobs on every core at once
# (creating a file is kernel work, no GIL): one job per pack left a pack of 10k small
# files to one thread for seconds while the other had nothing left to write. More threads
# than cores only fight over the GIL (futex calls x5).
SLICE = 128  # blobs per job
WRITERS = max(2, os.cpu_count() or 1)  # threads writing


@dataclass(eq=False, slots=True)  # one per file restored
class RestoreFile:
    dest: str
    node: Node
    size: int = 0
    pending: int = 0  # blob writes still to do
    created: bool = False
    error: str = ""

    @property
    def tmp(self) -> str:
        """Beside dest; renamed to it once all its data is written and synced (made when
        needed: a string per file would cost more than the file's whole plan)."""
        return temp_name(self.dest)


def temp_name(dest: str) -> str:
    head, name = os.path.split(dest)
    return os.path.join(head, f".{name}.p2pbak-{os.getpid()}.tmp")


@dataclass(slots=True)
class _Blob:
    blob_id: str
    offset: int
    length: int
    targets: list[tuple[RestoreFile, int]] = field(default_factory=list)


@dataclass
class Plan:
    """Data pack -> its blobs -> where each goes; packs in order of first use."""

    packs: dict[str, dict[str, _Blob]] = field(default_factory=dict)
    files: list[RestoreFile] = field(default_factory=list)

    def add(self, index: Index, file: RestoreFile) -> None:
        self.files.append(file)
        offset = 0
        for blob_id in file.node.content:
            loc = index.get(blob_id)
            if loc is None or loc.kind != BlobType.DATA:
                file.error = (f"blob {blob_id[:12]} is missing from the repository index; "
                              "run `p2pbak check`")
                return
            blobs = self.packs.setdefault(loc.pack_id, {})
            blob = blobs.get(blob_id)
            if blob is None:
                blob = blobs[blob_id] = _Blob(blob_id, loc.offset, loc.length)
            blob.targets.append((file, offset))
            offset += loc.raw_length
        file.size, file.pending = offset, len(file.node.content)


class Pieces:
    """A pack as the pieces `get_pack_parts` gave: a blob is a view of its piece, or a copy
    of its bytes where it crosses into the next one."""

    def __init__(self, parts: list[memoryview]) -> None:
        self.parts = parts
        self.starts = list(accumulate((len(p) for p in parts), initial=0))

    def slice(self, offset: int, length: int) -> bytes | memoryview:
        i = max(0, bisect_right(self.starts, offset) - 1)
        start = offset - self.starts[i]
        if i < len(self.parts) and start + length <= len(self.parts[i]):
            return self.parts[i][start:start + length]
        out: list[memoryview] = []
        for part in self.parts[i:]:
            if length <= 0:
                break
            out.append(part[start:start + length])
            length -= len(out[-1])
            start = 0
        return b"".join(out)


class PackWriter:
    """Writes the packs of a plan into their files; the thread-side part of a restore."""

    def __init__(self, keys: Keys, plan: Plan, state: Progress) -> None:
        self.keys, self.plan, self.state = keys, plan, state
        self._lock = threading.Lock()

    def _open(self, file: RestoreFile) -> int:
        # Creating is the slow part: done outside the lock, so both workers create at once.
        if len(file.node.content) == 1:  # its only blob: no other writer, no ftruncate
            fd = os.open(file.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            file.created = True
            return fd
        fd = os.open(file.tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with self._lock:
            first, file.created = not file.created, True
        if first:
            # To its size: cuts what a stale temporary file had beyond it, keeps what
            # another worker may have written already (every offset is below the size).
            os.ftruncate(fd, file.size)
            if file.size >= PREALLOCATE_MIN:
                # a file system without it: pwrite still fills the file
                with contextlib.suppress(OSError):
                    os.posix_fallocate(fd, 0, file.size)
        return fd

    def slices(self, pack_id: str) -> list[list[_Blob]]:
        """The blobs of one pack in jobs of SLICE (write_blobs each, on any thread)."""
        blobs = list(self.plan.packs[pack_id].values())
        return [blobs[i:i + SLICE] for i in range(0, len(blobs), SLICE)]

    def write_blobs(self, blobs: list[_Blob], pack: Pieces) -> None:
        """These blobs of one pack into every file that needs them (runs in a worker)."""
        fds: dict[RestoreFile, int] = {}
        try:
            for blob in blobs:
                self._write_blob(blob, pack, fds)
        finally:
            for fd in fds.values():
                os.close(fd)

    def _write_blob(self, blob: _Blob, pack: Pieces, fds: dict[RestoreFile, int]) -> None:
        live = [(f, off) for f, off in blob.targets if not f.error]
        if not live:
            return
        try:
            plain = open_blob(self.keys, BlobType.DATA, blob.blob_id,
                              pack.slice(blob.offset, blob.length))
        except P2pbakError as exc:
            self.fail([f for f, _ in live], str(exc))
            return
        for file, offset in live:
            try:
                fd = fds.get(file)
                if fd is None:
                    if len(fds) >= _MAX_OPEN:
                        os.close(fds.pop(next(iter(fds))))
                    fd = fds[file] = self._open(file)
                os.pwrite(fd, plain, offset)
            except OSError as exc:
                self.fail([file], exc.strerror or str(exc))
                continue
            with self._lock:
                file.pending -= 1
                self.state.bytes_done += len(plain)
                done = file.pending == 0
                self.state.files_done += done
            if done:  # mode and times once all its data is there
                fd = fds.pop(file)
                try:
                    os.fchmod(fd, file.node.mode)
                    os.utime(fd, ns=(file.node.mtime_ns, file.node.mtime_ns))
                except OSError as exc:
                    self.fail([file], exc.strerror or str(exc))
                finally:
                    os.close(fd)

    def fail(self, files: list[RestoreFile], why: str) -> None:
        with self._lock:
            for file in files:
                file.error = file.error or why

    def fail_pack(self, pack_id: str, why: str) -> None:
        self.fail([f for b in self.plan.packs[pack_id].values() for f, _ in b.targets], why)


async def write_files(repo: Repository, keys: Keys, plan: Plan, state: Progress,
                      progress: Callable[[Progress], None] | None,
                      window: int = DEFAULT_WINDOW,
                      ready: Awaitable[None] | None = None) -> None:
    """Fetch the plan's packs `window` at a time and write them (once `ready`: the folders
    exist); errors land on the files."""
    if window < 1:
        raise P2pbakError(f"restore window {window} must be at least 1")
    loop = asyncio.get_running_loop()
    writer = PackWriter(keys, plan, state)
    slots = asyncio.Semaphore(window)

    async def one(pack_id: str) -> None:
        try:
            data = await repo.get_pack_parts(pack_id)
            if ready is not None:
                await asyncio.shield(ready)
            pack = Pieces(data)
            await asyncio.gather(*(loop.run_in_executor(pool, writer.write_blobs, part, pack)
                                   for part in writer.slices(pack_id)))
        except P2pbakError as exc:
            writer.fail_pack(pack_id, str(exc))
        finally:
            slots.release()
        if progress is not None:
            progress(state)

    with ThreadPoolExecutor(WRITERS, thread_name_prefix="restore") as pool:
        tasks = []
        try:
            for pack_id in plan.packs:
                await slots.acquire()
                tasks.append(asyncio.create_task(one(pack_id)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
