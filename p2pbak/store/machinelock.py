"""The machine lock: two backups of the same machine (same config) never run at once.

Like restic's lock, but local: a file `backup.lock` in the config's cache folder, created with
O_EXCL and held with flock(2) for the whole run. flock is released by the kernel when the
holder dies, so a lock whose flock can be taken is stale and is taken over in place. The file
also records pid, host, start time and command: for the "held by pid N since T" message, and
to judge staleness on filesystems without flock (a dead pid on this host means stale).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from p2pbak.errors import ExitCode, Locked, P2pbakError

LOCK_NAME = "backup.lock"
_POLL = 0.2  # seconds between attempts while waiting for --retry-lock
_UNWRITTEN_GRACE = 10.0  # a lock file still empty after this long lost its creator
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}
RETRY_HINT = "wait or use --retry-lock 5m"


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the process holding it."""

    pid: int
    host: str
    started: float
    command: str

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} on {self.host} since {since}"

    def dead_here(self) -> bool:
        """True when the holder ran on this host and its process is gone."""
        return self.host == socket.gethostname() and not _pid_alive(self.pid)


@contextmanager
def machine_lock(lock_dir: Path, *, retry: float = 0.0, command: str = "backup",
                 hint: str = RETRY_HINT) -> Iterator[None]:
    """Hold this machine's lock for the body; wait up to `retry` seconds for a live holder.

    Raises errors.Locked (exit code 11) when the lock is still held after `retry` seconds;
    its message names the holder and ends with `hint` (what the user can do).
    """
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = lock_dir / LOCK_NAME
    deadline = time.monotonic() + max(retry, 0.0)
    while True:
        fd, holder = _try_acquire(path, command)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            raise Locked(_held_message(command, holder, hint))
        time.sleep(min(_POLL, max(deadline - time.monotonic(), 0.0)))
    try:
        yield
    finally:
        _release(path, fd)


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in a lock file, or None if absent, empty or unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Holder(pid=int(raw["pid"]), host=str(raw["host"]),
                      started=float(raw["started"]), command=str(raw["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_duration(text: str) -> float:
    """'5s', '10m', '1h', '1h30m', '250ms', '90' (seconds) → seconds."""
    body = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", body)
    rebuilt = "".join(n + u for n, u in parts)
    if not body or rebuilt != body or (len(parts) > 1 and not all(u for _, u in parts)):
        raise P2pbakError(f"cannot read duration {text!r}: write it like 30s, 5m, 1h or 1h30m",
                          ExitCode.USAGE)
    scale = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}
    return float(sum(float(n) * scale[u] for n, u in parts))


def _held_message(command: str, holder: Holder | None, hint: str) -> str:
    who = f" ({holder.describe()})" if holder is not None else ""
    return f"another {holder.command if holder else command} is running{who}; {hint}"


def _try_acquire(path: Path, command: str) -> tuple[int | None, Holder | None]:
    """One attempt: (fd, None) when taken, (None, holder) when someone else holds it."""
    for _ in range(10):  # the file may vanish or be replaced under us: look again at once
        fd, created = _open(path)
        if fd is None:
            continue
        try:
            if not _flock(fd, path, created):
                break
            if _same_file(fd, path):
                _write_holder(fd, command)
                return fd, None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    else:
        return None, None
    os.close(fd)
    return None, read_holder(path)


def _open(path: Path) -> tuple[int | None, bool]:
    """(fd, created): create the lock file exclusively, else open the existing one."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        pass
    try:
        return os.open(path, os.O_RDWR), False
    except FileNotFoundError:  # released between our two opens
        return None, False


def _flock(fd: int, path: Path, created: bool) -> bool:
    """Take flock on an open lock file; on a filesystem without flock judge by its content."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise
        return created or _stale_without_flock(path)
    # Got flock on a file we did not create: its creator released it or died. If the file is
    # still empty, its creator may be between O_EXCL and writing: wait for it, unless it is old.
    return created or read_holder(path) is not None or _age(path) > _UNWRITTEN_GRACE


def _stale_without_flock(path: Path) -> bool:
    holder = read_holder(path)
    if holder is None:
        return _age(path) > _UNWRITTEN_GRACE
    return holder.dead_here()


def _same_file(fd: int, path: Path) -> bool:
    """The path still names the file we locked (a finishing holder may have unlinked it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _write_holder(fd: int, command: str) -> None:
    data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.time(), "command": command}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _release(path: Path, fd: int) -> None:
    """Unlink while still holding flock, so no waiter can lock the dying file unnoticed."""
    try:
        if _same_file(fd, path):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


__all__ = ["LOCK_NAME", "RETRY_HINT", "Holder", "machine_lock", "parse_duration",
           "read_holder"]
