"""Mount, serve until SIGINT/SIGTERM (or an outside `fusermount3 -u`), unmount."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyfuse3

from p2pbak.datapath.browse import open_reader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import list_snapshots
from p2pbak.datapath.together import both
from p2pbak.errors import P2pbakError
from p2pbak.mountfs import compat
from p2pbak.mountfs.fs import SnapshotFS
from p2pbak.mountfs.inodes import Inodes
from p2pbak.mountfs.layout import layout

OPTIONS = frozenset({*pyfuse3.default_options, "ro", "fsname=p2pbak", "subtype=p2pbak"})
_STOP = (signal.SIGINT, signal.SIGTERM)


def check_mountpoint(path: Path) -> None:
    """An existing empty folder, or one line saying what it is instead."""
    try:
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            raise P2pbakError(f"mountpoint {path} {what}; give an empty folder")
        if any(path.iterdir()):
            raise P2pbakError(f"mountpoint {path} is not empty; give an empty folder")
    except OSError as exc:  # a dead mount left there: ENOTCONN
        raise P2pbakError(f"mountpoint {path}: {exc.strerror}; if a mount is left there, "
                          f"run `fusermount3 -u {path}`") from None


async def mount(repo: Repository, master: bytes, mountpoint: Path,
                mounted: Callable[[int], None], warn: Callable[[str], None]) -> dict[str, Any]:
    """Serve the snapshots at `mountpoint` (checked already) until told to stop; what
    was served."""
    records, reader = await both(list_snapshots(repo, master), open_reader(repo, master))
    fs = SnapshotFS(Inodes(reader, layout(records), time.time_ns()), warn)
    compat.enable()
    try:
        pyfuse3.init(fs, os.fspath(mountpoint), set(OPTIONS))
    except RuntimeError:
        reader.close()
        raise P2pbakError(f"cannot mount {mountpoint}: FUSE refused (needs /dev/fuse and "
                          "fusermount3: apt-get install fuse3)") from None
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        for sig in _STOP:
            loop.add_signal_handler(sig, pyfuse3.terminate)
        mounted(len(records))
        await pyfuse3.main()
    finally:
        for sig in _STOP:
            loop.remove_signal_handler(sig)
        try:
            pyfuse3.close(unmount=True)
        finally:
            reader.close()
    return {"mountpoint": str(mountpoint), "snapshots": len(records),
            "files_opened": fs.files_opened, "bytes_read": fs.inodes.bytes_read,
            "seconds": round(time.monotonic() - started, 3)}
