"""The client's local metadata cache, as restic's: index and snapshot blobs kept on disk.

Blobs are stored exactly as the coordinator holds them (sealed: nothing here is
plaintext, and no key is ever written), one file each, named by their id. An id is the
BLAKE3 of the sealed bytes, so every read is checked against its name and a damaged or
foreign file is dropped and fetched again. One folder per repository under the platform's
user cache folder ($P2PBAK_CACHE_DIR overrides it); a folder's `last-used` stamp is what
`p2pbak cache --cleanup` reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3
import platformdirs

ENV_CACHE_DIR = "P2PBAK_CACHE_DIR"
KINDS = ("index", "snapshot")
STAMP = "last-used"
INFO = "repository.json"
KEYFILE = "keyfile"  # the wrapped key file, as the coordinator holds it (never a key)
TAG = "CACHEDIR.TAG"
_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This file is a cache directory tag created by p2pbak.\n")
DAY = 86400


def default_base() -> Path:
    """$P2PBAK_CACHE_DIR, else the platform's user cache folder for p2pbak."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("p2pbak"))


def repository_id(coordinator: str, user: str, keyfile: bytes) -> str:
    """A repository's cache name: its coordinator, user and wrapped key file (a repository
    made again under the same name gets a new key file, hence a new cache)."""
    h = blake3.blake3(b"p2pbak cache v1\0")
    for part in (coordinator.rstrip("/").encode(), user.encode(), keyfile):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:32]


class MetadataCache:
    """One repository's cached blobs: <base>/<repository id>/<kind>/<id>."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, base: Path, repo_id: str, info: dict[str, str]) -> MetadataCache:
        """The repository's cache, created if new, stamped as used now."""
        root = base / repo_id
        for kind in KINDS:
            (root / kind).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        tag = base / TAG
        if not tag.exists():
            tag.write_text(_TAG_TEXT)
        info_path = root / INFO
        if not info_path.exists():
            _write(info_path, json.dumps(info).encode())
        (root / STAMP).touch()
        return cls(root)

    def _path(self, kind: str, blob_id: str) -> Path:
        if kind not in KINDS or len(blob_id) != 64 or not _is_hex(blob_id):
            raise ValueError(f"bad cache entry {kind}/{blob_id!r}")
        return self.root / kind / blob_id

    def get(self, kind: str, blob_id: str) -> bytes | None:
        """The cached blob, if present and matching its id (a bad one is removed)."""
        path = self._path(kind, blob_id)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if blake3.blake3(data).hexdigest() != blob_id:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, kind: str, blob_id: str, data: bytes) -> None:
        """Keep a blob (only under its true id: anything else is not cached). A full or
        read-only cache folder is no error: it only costs a fetch next time."""
        if blake3.blake3(data).hexdigest() == blob_id:
            with contextlib.suppress(OSError):
                _write(self._path(kind, blob_id), data)

    def put_keyfile(self, keyfile: bytes) -> None:
        """Keep the wrapped key file, so the next run can start unwrapping it (scrypt) before
        the coordinator answers; written only when it changed."""
        path = self.root / KEYFILE
        with contextlib.suppress(OSError):
            if not path.is_file() or path.read_bytes() != keyfile:
                _write(path, keyfile)

    def delete(self, kind: str, blob_id: str) -> None:
        with contextlib.suppress(OSError):
            self._path(kind, blob_id).unlink(missing_ok=True)

    def retain(self, kind: str, ids: Iterable[str]) -> None:
        """Drop the cached blobs the repository no longer lists (forgotten, pruned)."""
        keep = set(ids)
        with contextlib.suppress(OSError):
            for path in (self.root / kind).iterdir():
                if path.name not in keep:
                    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CacheInfo:
    id: str
    path: str
    coordinator: str
    user: str
    last_used: float  # Unix seconds
    size: int  # bytes of cached blobs
    blobs: int


def list_caches(base: Path) -> list[CacheInfo]:
    """Every repository cache under `base`, most recently used first."""
    out = []
    if not base.is_dir():
        return out
    for root in base.iterdir():
        if not (root / STAMP).is_file():
            continue
        try:
            info = json.loads((root / INFO).read_text())
        except (OSError, ValueError):
            info = {}
        files = [p for kind in KINDS if (root / kind).is_dir() for p in (root / kind).iterdir()]
        out.append(CacheInfo(root.name, str(root), str(info.get("coordinator", "")),
                             str(info.get("user", "")), (root / STAMP).stat().st_mtime,
                             sum(p.stat().st_size for p in files), len(files)))
    return sorted(out, key=lambda c: -c.last_used)


def cached_keyfile(base: Path, coordinator: str, user: str) -> bytes | None:
    """The wrapped key file last cached for this coordinator and user, or None. A folder's
    name is the repository id of coordinator, user and key file: it picks the folder and
    checks the file."""
    try:
        roots = sorted((r for r in base.iterdir() if (r / KEYFILE).is_file()),
                       key=lambda r: -_mtime(r / STAMP))
    except OSError:
        return None
    for root in roots:
        try:
            keyfile = (root / KEYFILE).read_bytes()
        except OSError:
            continue
        if repository_id(coordinator, user, keyfile) == root.name:
            return keyfile
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def cleanup(base: Path, max_age_days: int = 30, now: float | None = None) -> list[CacheInfo]:
    """Remove the caches not used for `max_age_days`; those removed."""
    limit = (time.time() if now is None else now) - max_age_days * DAY
    old = [c for c in list_caches(base) if c.last_used < limit]
    for c in old:
        shutil.rmtree(c.path, ignore_errors=True)
    return old


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return text == text.lower()
