"""The index: blob id -> (pack, offset, length), kept as sealed index blobs in the repository.

Each backup stores one index blob listing the packs it added; loading a repository reads
them all (docs/formats.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import blake3
import msgpack
import zstandard

from p2pbak.datapath.blobs import BlobType
from p2pbak.datapath.crypto import DamagedBlob, Keys, open_sealed, seal
from p2pbak.datapath.pack import PackEntry, entry_rows
from p2pbak.datapath.repository import Repository

INDEX_VERSION = 1
_AAD = b"p2pbak index v1"
_KINDS = {int(k): k for k in BlobType}


@dataclass(frozen=True, slots=True)  # one per blob in the repository
class Location:
    pack_id: str
    kind: BlobType
    offset: int
    length: int
    raw_length: int


class Index:
    def __init__(self) -> None:
        self._blobs: dict[str, Location] = {}

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: str) -> Location | None:
        return self._blobs.get(blob_id)

    def add_pack(self, pack_id: str, entries: Iterable[PackEntry]) -> None:
        for e in entries:
            self._blobs.setdefault(e.blob_id, Location(pack_id, e.kind, e.offset, e.length,
                                                       e.raw_length))

    def add_rows(self, pack_id: str, rows: Iterable[Sequence[Any]]) -> None:
        """add_pack from an index blob's rows (pack.entry_rows), without a PackEntry each:
        loading the index is a re-run's largest decode."""
        blobs = self._blobs
        for k, raw_id, offset, length, raw_length in rows:
            blob_id = raw_id.hex()
            if blob_id not in blobs:
                kind = _KINDS[k] if k in _KINDS else BlobType(k)  # ValueError if unknown
                blobs[blob_id] = Location(pack_id, kind, offset, length, raw_length)

    def packs(self) -> set[str]:
        return {loc.pack_id for loc in self._blobs.values()}


def encode_index(keys: Keys, packs: Iterable[tuple[str, Iterable[PackEntry]]]) -> tuple[str, bytes]:
    """(index id, sealed index blob) listing the given packs."""
    return encode_index_rows(keys, [(pack_id, entry_rows(entries)) for pack_id, entries in packs])


def encode_index_rows(keys: Keys, packs: Iterable[tuple[str, list[list[object]]]]
                      ) -> tuple[str, bytes]:
    """encode_index of packs given as their entry rows (Pack.rows)."""
    doc = {"v": INDEX_VERSION, "packs": [[bytes.fromhex(pack_id), rows]
                                         for pack_id, rows in packs]}
    plain = zstandard.ZstdCompressor().compress(msgpack.packb(doc))
    sealed = seal(keys.blob, plain, _AAD)
    return blake3.blake3(sealed).hexdigest(), sealed


def decode_index(keys: Keys, sealed: bytes, into: Index) -> None:
    plain = open_sealed(keys.blob, sealed, _AAD)
    try:
        doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain))
    except zstandard.ZstdError:
        raise DamagedBlob("index blob is damaged") from None
    if doc.get("v") != INDEX_VERSION:
        raise DamagedBlob(f"index version {doc.get('v')} is not supported; upgrade p2pbak")
    for pack_id, rows in doc["packs"]:
        into.add_rows(pack_id.hex(), rows)


async def load_index(repo: Repository, keys: Keys) -> Index:
    """Every index blob of the repository, merged."""
    index = Index()
    ids = await repo.list_indexes()
    blobs = await asyncio.gather(*(repo.get_index(i) for i in ids))
    for sealed in blobs:
        decode_index(keys, sealed, index)
    return index
