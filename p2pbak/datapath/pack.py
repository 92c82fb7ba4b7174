"""Packs: sealed blobs back to back, then a sealed header listing them (docs/formats.md).

pack = blob_1 || ... || blob_m || sealed header || u32 little-endian header length.
The pack id is BLAKE3 of the whole pack.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from p2pbak.datapath.blobs import BlobType
from p2pbak.datapath.crypto import DamagedBlob, Keys, open_sealed, seal

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
_HEADER_AAD = b"p2pbak pack header v1"
_TRAILER = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class PackEntry:
    kind: BlobType
    blob_id: str
    offset: int
    length: int  # sealed bytes in the pack
    raw_length: int  # plaintext bytes


@dataclass(frozen=True)
class Pack:
    pack_id: str
    data: bytes
    entries: tuple[PackEntry, ...]
    # entry_rows(entries), made once for the header: the checkpoint and the backup's index
    # blob list the same rows (a row per small file of a first backup, three times over)
    rows: list[list[object]] = field(default_factory=list, compare=False, repr=False)


def entry_rows(entries: Iterable[PackEntry]) -> list[list[object]]:
    """Entries as the msgpack rows a pack header and an index blob store."""
    return [[e.kind, bytes.fromhex(e.blob_id), e.offset, e.length, e.raw_length]
            for e in entries]


def entries_from_rows(rows: Iterable[Sequence[Any]]) -> list[PackEntry]:
    return [PackEntry(BlobType(k), i.hex(), o, n, r) for k, i, o, n, r in rows]


class PackWriter:
    """Collects sealed blobs until the pack is full. With `first_size`, the first pack is
    that small and each next one twice as big, up to `target_size`: a backup's first
    upload starts after a little reading, not 16 MiB of it."""

    def __init__(self, target_size: int = DEFAULT_PACK_SIZE,
                 first_size: int | None = None) -> None:
        self.limit = target_size
        self.target_size = min(target_size, first_size or target_size)
        self._parts: list[bytes] = []
        self._entries: list[PackEntry] = []
        self.size = 0

    def add(self, kind: BlobType, blob_id: str, sealed: bytes, raw_length: int) -> None:
        self._entries.append(PackEntry(kind, blob_id, self.size, len(sealed), raw_length))
        self._parts.append(sealed)
        self.size += len(sealed)

    @property
    def full(self) -> bool:
        return self.size >= self.target_size

    def __len__(self) -> int:
        return len(self._entries)

    def finish(self, keys: Keys) -> Pack:
        """The pack so far (the writer starts over empty)."""
        rows = entry_rows(self._entries)
        sealed = seal(keys.blob, msgpack.packb(rows), _HEADER_AAD)
        data = b"".join([*self._parts, sealed, _TRAILER.pack(len(sealed))])
        pack = Pack(blake3.blake3(data).hexdigest(), data, tuple(self._entries), rows)
        self._parts, self._entries, self.size = [], [], 0
        self.target_size = min(self.limit, self.target_size * 2)
        return pack


def read_header(keys: Keys, data: bytes) -> list[PackEntry]:
    """The blob list of a pack, from its sealed header."""
    if len(data) < _TRAILER.size:
        raise DamagedBlob("pack is truncated")
    (length,) = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    start = len(data) - _TRAILER.size - length
    if start < 0:
        raise DamagedBlob("pack header length is damaged")
    return entries_from_rows(msgpack.unpackb(
        open_sealed(keys.blob, memoryview(data)[start:-_TRAILER.size], _HEADER_AAD)))
