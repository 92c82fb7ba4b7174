"""Blobs: a chunk of file data or a tree, compressed when that helps, then sealed.

Sealed form: AEAD(flag || payload), flag 0 = stored, 1 = zstd; the associated data binds
the blob type and id, so a blob cannot be passed off as another.
"""

from __future__ import annotations

import threading
from enum import IntEnum

import zstandard

from p2pbak.datapath.crypto import DamagedBlob, Keys, open_sealed, seal

_STORED = b"\0"
_ZSTD = b"\1"
ZSTD_LEVEL = 3
_SAMPLE = 16 * 1024


# zstd contexts cost ~10x a small blob's compression to make: one per thread, reused
# (a context must not be used by two threads at once).
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


class BlobType(IntEnum):
    DATA = 0
    TREE = 1


def _aad(kind: BlobType, blob_id: str) -> bytes:
    return bytes([kind]) + bytes.fromhex(blob_id)


def _looks_incompressible(data: bytes | memoryview) -> bool:
    """A big blob whose samples (start, middle, end) zstd cannot shrink is not tried whole:
    already-compressed media and ciphertext cost a full compression pass for nothing."""
    if len(data) < 4 * _SAMPLE:
        return False
    view = memoryview(data)
    middle = len(view) // 2
    sample = b"".join((view[:_SAMPLE], view[middle:middle + _SAMPLE], view[-_SAMPLE:]))
    packed = _compressor().compress(sample)
    return len(packed) >= len(sample) * 0.98


def compress(data: bytes | memoryview) -> bytes:
    """flag || payload: zstd when it makes the blob smaller, the raw bytes otherwise."""
    if not _looks_incompressible(data):
        packed = _compressor().compress(data)
        if len(packed) < len(data):
            return _ZSTD + packed
    return b"".join((_STORED, data))


def decompress(framed: bytes) -> bytes:
    flag, payload = framed[:1], memoryview(framed)[1:]
    if flag == _STORED:
        return bytes(payload)
    if flag == _ZSTD:
        try:
            return _decompressor().decompress(payload)
        except zstandard.ZstdError:
            raise DamagedBlob("compressed blob is damaged") from None
    raise DamagedBlob(f"unknown blob encoding {flag!r}")


def seal_blob(keys: Keys, kind: BlobType, blob_id: str, data: bytes | memoryview) -> bytes:
    return seal(keys.blob, compress(data), _aad(kind, blob_id))


def open_blob(keys: Keys, kind: BlobType, blob_id: str, sealed: bytes | memoryview) -> bytes:
    """The plaintext of a blob, checked against its keyed id."""
    plain = decompress(open_sealed(keys.blob, sealed, _aad(kind, blob_id)))
    if keys.chunk_id_of(plain) != blob_id:
        raise DamagedBlob(f"blob {blob_id[:12]} does not match its id")
    return plain
