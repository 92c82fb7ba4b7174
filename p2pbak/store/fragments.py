"""A peer's fragment store: content-addressed files under DIR/fragments/ab/cd/<id>.

Fragments belong to other users and are already encrypted and erasure-coded; this store
only keeps them intact. Writes are atomic (temp file in the target folder, fsync, rename,
fsync the folder), so a crash leaves either no fragment or the whole one. Reads re-hash
the bytes (BLAKE3) and never return a fragment that no longer matches its id.
Ticket ids seen are kept in DIR/tickets.sqlite until they expire, so a ticket cannot be
replayed, not even across a restart.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from p2pbak.config import fsync_dir
from p2pbak.errors import Locked, StoreError
from p2pbak.store.machinelock import machine_lock

log = logging.getLogger("p2pbak.peer")

ID_RE = re.compile(r"[0-9a-f]{64}")
TMP_SUFFIX = ".tmp"
_DB_NAME = "tickets.sqlite"


def valid_id(fragment_id: str) -> bool:
    return ID_RE.fullmatch(fragment_id) is not None


@dataclass
class Writer:
    """One fragment being received: bytes go to a temp file and are hashed on the way."""

    store: FragmentStore
    fragment_id: str
    tmp: Path
    fh: BinaryIO
    size: int = 0

    def __post_init__(self) -> None:
        self._hash = blake3.blake3()
        self._committing = False

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def matches(self) -> bool:
        return self._hash.hexdigest() == self.fragment_id

    def commit(self) -> bool:
        """Make the fragment durable under its id; False if it was already there.

        May run in a worker thread; once started, `abort` leaves the cleanup to it.
        """
        self._committing = True
        final = self.store.path(self.fragment_id)
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            try:
                os.link(self.tmp, final)  # unlike rename, never replaces another writer's
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                os.replace(self.tmp, final)  # a filesystem without hard links
        finally:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)
        fsync_dir(final.parent)
        self.store.count(self.size)
        return True

    def abort(self) -> None:
        """Drop the temp file (a no-op once a commit has started)."""
        if self._committing:
            return
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


class FragmentStore:
    """Fragments on disk plus the replay memory of ticket ids."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "fragments"
        self.stored_bytes = 0
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        self._lock = threading.Lock()  # commits run in worker threads
        self._hold = contextlib.ExitStack()  # the folder's lock while open

    def count(self, delta: int) -> None:
        with self._lock:
            self.stored_bytes = max(0, self.stored_bytes + delta)

    def open(self) -> FragmentStore:
        """Lock the folder, create the layout, drop temp files a killed writer left, count
        what is stored. One agent per folder: a second would delete the first's temp files."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"storage {self.root} is not a folder: choose a folder for "
                             "--storage")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"storage {self.root} is not writable ({exc.strerror}): choose "
                             "a --storage folder this user can write") from None
        try:
            self._hold.enter_context(machine_lock(self.root, command="peer run"))
        except Locked as exc:
            holder = str(exc).split(";")[0]
            raise StoreError(f"storage {self.root} is in use: {holder}; stop that agent or "
                             "choose another --storage") from None
        try:
            self._db = self._open_db()
        except sqlite3.Error as exc:
            self._hold.close()
            raise StoreError(f"storage {self.root}: cannot open {_DB_NAME} ({exc})") from None
        self.stored_bytes = self._scan()
        return self

    def _open_db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / _DB_NAME, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS used_tickets "
                   "(id TEXT PRIMARY KEY, exp INTEGER NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS used_tickets_exp ON used_tickets(exp)")
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._hold.close()

    def _scan(self) -> int:
        total = 0
        for dirpath, _, names in os.walk(self.dir):
            for name in names:
                p = Path(dirpath) / name
                if name.endswith(TMP_SUFFIX) or not valid_id(name):
                    log.info("removing leftover %s", p.relative_to(self.root))
                    p.unlink(missing_ok=True)
                else:
                    total += p.stat().st_size
        return total

    # -- paths -----------------------------------------------------------------------

    def path(self, fragment_id: str) -> Path:
        """Where a fragment lives; the id is checked first, so no path comes from raw input."""
        if not valid_id(fragment_id):
            raise ValueError("fragment id must be 64 lowercase hex digits")
        return self.dir / fragment_id[:2] / fragment_id[2:4] / fragment_id

    def has(self, fragment_id: str) -> bool:
        return self.path(fragment_id).is_file()

    # -- write, read, delete ---------------------------------------------------------

    def writer(self, fragment_id: str) -> Writer:
        final = self.path(fragment_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        tmp = final.with_name(f".{fragment_id}.{os.getpid()}.{self._seq}{TMP_SUFFIX}")
        fh = open(tmp, "wb")  # noqa: SIM115 - closed by Writer.commit/abort
        return Writer(self, fragment_id, tmp, fh)

    def put(self, fragment_id: str, data: bytes) -> bool:
        """Store whole bytes (they must hash to the id); False if already held."""
        w = self.writer(fragment_id)
        try:
            w.write(data)
            if not w.matches():
                raise ValueError("bytes do not hash to the fragment id")
            return w.commit()
        finally:
            w.abort()

    def read(self, fragment_id: str) -> bytes | None:
        """The fragment's bytes, or None if absent or corrupt (a corrupt one is removed)."""
        p = self.path(fragment_id)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        if blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest() != fragment_id:
            log.warning("fragment %s is corrupt on disk: removed", fragment_id)
            self._remove(p, len(data))
            return None
        return data

    def delete(self, fragment_id: str) -> bool:
        p = self.path(fragment_id)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return False
        return self._remove(p, size)

    def clear(self) -> int:
        """Drop every fragment held (a peer re-joining after it left holds nothing the
        coordinator counts); the number dropped."""
        dropped = 0
        for _, _, names in os.walk(self.dir):
            for name in names:
                if valid_id(name):
                    dropped += self.delete(name)
        return dropped

    def _remove(self, p: Path, size: int) -> bool:
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        self.count(-size)
        fsync_dir(p.parent)
        return True

    # -- space -----------------------------------------------------------------------

    def disk_free(self) -> int:
        return shutil.disk_usage(self.root).free

    def free_bytes(self, space_cap: int | None, reserved: int = 0) -> int:
        """Room for more fragments: under the space cap (None = no cap, 0 = none) and on
        the disk."""
        free = self.disk_free()
        if space_cap is not None:
            free = min(free, space_cap - self.stored_bytes - reserved)
        return max(0, free)

    # -- replay memory ---------------------------------------------------------------

    def ticket_used(self, ticket_id: str) -> bool:
        """Whether a ticket id was used already (not recording it)."""
        assert self._db is not None, "open() the store first"
        cur = self._db.execute("SELECT 1 FROM used_tickets WHERE id = ?", (ticket_id,))
        return cur.fetchone() is not None

    def use_ticket(self, ticket_id: str, exp: int, now: float | None = None) -> bool:
        """Record a ticket id; False if it was used before (a replay)."""
        assert self._db is not None, "open() the store first"
        t = int(time.time() if now is None else now)
        self._db.execute("DELETE FROM used_tickets WHERE exp < ?", (t,))
        cur = self._db.execute("INSERT OR IGNORE INTO used_tickets (id, exp) VALUES (?, ?)",
                               (ticket_id, exp))
        return cur.rowcount == 1
