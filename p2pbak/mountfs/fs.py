"""The FUSE side of a mount: pyfuse3's Operations over Inodes, read-only.

Snapshots never change, so the kernel may cache names, attributes and data for long.
A data path failure (a pack no peer can serve) is EIO to the reader and a warning line.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import TypeVar

import pyfuse3

from p2pbak.errors import P2pbakError
from p2pbak.mountfs.inodes import Entry, Inodes

CACHE_SECONDS = 300.0
T = TypeVar("T")


class SnapshotFS(pyfuse3.Operations):
    def __init__(self, inodes: Inodes, warn: Callable[[str], None]) -> None:
        super().__init__()
        self.inodes, self.warn = inodes, warn
        self.files_opened = 0
        self._uid, self._gid = os.getuid(), os.getgid()

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        e: Entry = self.inodes.entries[ino]
        a = pyfuse3.EntryAttributes()
        a.st_ino, a.st_mode, a.st_nlink = ino, e.mode, 2 if e.is_dir else 1
        a.st_uid, a.st_gid, a.st_size = self._uid, self._gid, e.size
        a.st_blksize, a.st_blocks = 4096, (e.size + 511) // 512
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = e.mtime_ns
        a.entry_timeout = a.attr_timeout = CACHE_SECONDS
        return a

    def _entry(self, ino: int) -> Entry:
        e = self.inodes.entries.get(ino)
        if e is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return e

    async def _guard(self, what: str, call: Awaitable[T]) -> T:
        """Await `call`; a failure becomes EIO and one warning line (any other exception
        would end pyfuse3's main loop, leaving a dead mount)."""
        try:
            return await call
        except (pyfuse3.FUSEError, KeyError):
            raise
        except P2pbakError as exc:
            self.warn(f"{what}: {exc}")
        except Exception as exc:
            self.warn(f"{what}: unexpected {type(exc).__name__}: {exc}")
        raise pyfuse3.FUSEError(errno.EIO)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if not self._entry(parent_inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        try:
            ino = await self._guard("listing", self.inodes.lookup(parent_inode, name))
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        return self._attr(ino)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._entry(inode)
        return self._attr(inode)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self._entry(inode).target

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if not self._entry(inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        children = await self._guard("listing", self.inodes.children(fh))
        for i, (name, ino) in enumerate(islice(children.items(), start_id, None), start_id):
            if not pyfuse3.readdir_reply(token, name, self._attr(ino), i + 1):
                break

    async def releasedir(self, fh: int) -> None:
        return None

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        e = self._entry(inode)
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EROFS)
        if e.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.inodes.open(inode)
        self.files_opened += 1
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self._guard("reading", self.inodes.read(fh, off, size))

    async def flush(self, fh: int) -> None:
        return None

    async def release(self, fh: int) -> None:
        return None

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_files = len(self.inodes.entries)
        s.f_namemax = 255
        return s
