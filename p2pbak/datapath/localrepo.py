"""A repository in a local folder: packs erasure-coded into fragment files (fixed k/n).

Layout (docs/formats.md):
    config              msgpack {"v", "k", "n"}
    keyfile             the wrapped master key
    snapshots/<id>      sealed snapshot records
    index/<id>          sealed index blobs
    packs/<id[:2]>/<id>/<index>.<fragment id>   the n fragments of a pack

Every write goes to a temporary name first, then is renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

import msgpack

from p2pbak.datapath.erasure import check_code, decode_pack, encode_pack, fragment_id
from p2pbak.errors import NotInitialised, P2pbakError

_HEX_ID = re.compile(r"[0-9a-f]{64}")
CONFIG_VERSION = 1


def _check_id(blob_id: str) -> str:
    if not _HEX_ID.fullmatch(blob_id):
        raise P2pbakError(f"bad id {blob_id!r}: expected 64 lowercase hex digits")
    return blob_id


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LocalRepository:
    """The `Repository` protocol over a folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            doc = msgpack.unpackb((self.root / "config").read_bytes())
        except FileNotFoundError:
            raise NotInitialised(f"no repository at {self.root}; create it first") from None
        if doc.get("v") != CONFIG_VERSION:
            raise P2pbakError(f"repository format {doc.get('v')} is not supported")
        self.k, self.n = int(doc["k"]), int(doc["n"])

    @classmethod
    def create(cls, root: Path, k: int = 3, n: int = 5) -> LocalRepository:
        root = Path(root)
        if (root / "config").exists():
            raise P2pbakError(f"a repository already exists at {root}")
        check_code(k, n)
        for sub in ("snapshots", "index", "packs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        _write_atomic(root / "config", msgpack.packb({"v": CONFIG_VERSION, "k": k, "n": n}))
        return cls(root)

    def _pack_dir(self, pack_id: str) -> Path:
        return self.root / "packs" / pack_id[:2] / _check_id(pack_id)

    def _put_pack_sync(self, pack_id: str, data: bytes) -> None:
        folder = self._pack_dir(pack_id)
        for index, fragment in enumerate(encode_pack(pack_id, data, self.k, self.n)):
            _write_atomic(folder / f"{index:03d}.{fragment_id(fragment)}", fragment)

    def _get_pack_sync(self, pack_id: str) -> bytes:
        folder = self._pack_dir(pack_id)
        if not folder.is_dir():
            raise P2pbakError(f"pack {pack_id[:12]} is not in the repository")
        return decode_pack(pack_id, (p.read_bytes() for p in self.fragment_paths(pack_id)))

    async def put_pack(self, pack_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._put_pack_sync, pack_id, data)

    async def get_pack(self, pack_id: str) -> bytes:
        return await asyncio.to_thread(self._get_pack_sync, pack_id)

    async def get_pack_parts(self, pack_id: str) -> list[memoryview]:
        return [memoryview(await self.get_pack(pack_id))]  # one file read: nothing to save

    async def has_pack(self, pack_id: str) -> bool:
        return self._pack_dir(pack_id).is_dir()

    def fragment_paths(self, pack_id: str) -> list[Path]:
        """The fragment files of a pack (for inspection and tests)."""
        return sorted(p for p in self._pack_dir(pack_id).iterdir() if not p.name.startswith("."))

    def pack_ids(self) -> list[str]:
        return sorted(p.name for p in (self.root / "packs").glob("*/*") if p.is_dir())

    # Small blobs: one file each.
    def _read(self, kind: str, blob_id: str) -> bytes:
        try:
            return (self.root / kind / _check_id(blob_id)).read_bytes()
        except FileNotFoundError:
            raise P2pbakError(f"no {kind} entry {blob_id[:12]} in the repository") from None

    def _list(self, kind: str) -> list[str]:
        return sorted(p.name for p in (self.root / kind).iterdir() if _HEX_ID.fullmatch(p.name))

    async def put_snapshot(self, snapshot_id: str, blob: bytes) -> None:
        await asyncio.to_thread(_write_atomic, self.root / "snapshots" / _check_id(snapshot_id),
                                blob)

    async def get_snapshot(self, snapshot_id: str) -> bytes:
        return self._read("snapshots", snapshot_id)

    async def list_snapshots(self) -> list[str]:
        return self._list("snapshots")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "snapshots" / _check_id(snapshot_id)).unlink()

    async def put_index(self, index_id: str, blob: bytes) -> None:
        await asyncio.to_thread(_write_atomic, self.root / "index" / _check_id(index_id), blob)

    async def get_index(self, index_id: str) -> bytes:
        return self._read("index", index_id)

    async def list_indexes(self) -> list[str]:
        return self._list("index")

    async def delete_index(self, index_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "index" / _check_id(index_id)).unlink()

    async def get_keyfile(self) -> bytes:
        try:
            return (self.root / "keyfile").read_bytes()
        except FileNotFoundError:
            raise NotInitialised(f"no key file in {self.root}; initialise the repository") from None

    async def put_keyfile(self, blob: bytes) -> None:
        await asyncio.to_thread(_write_atomic, self.root / "keyfile", blob)
