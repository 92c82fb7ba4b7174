"""Chunking, blob sealing and packs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.datapath.blobs import BlobType, compress, decompress, open_blob, seal_blob
from p2pbak.datapath.chunker import MAX_SIZE, MIN_SIZE, chunks, file_chunks
from p2pbak.datapath.crypto import DamagedBlob, Keys
from p2pbak.datapath.index import Index, decode_index, encode_index
from p2pbak.datapath.pack import PackWriter, read_header

KEYS = Keys.derive(b"m" * 32)


def cut(data: bytes) -> list[bytes]:
    return [bytes(c) for c in chunks(io.BytesIO(data), len(data))]


def test_chunk_sizes_and_concatenation() -> None:
    data = os.urandom(24 * 1024 * 1024)
    parts = cut(data)
    assert b"".join(parts) == data
    assert all(MIN_SIZE <= len(p) <= MAX_SIZE for p in parts[:-1])
    assert 0 < len(parts[-1]) <= MAX_SIZE
    assert 8 <= len(parts) <= 48  # about 1 MiB each
    # A size hint that is wrong (file grew) still gives the same chunks.
    assert [bytes(c) for c in chunks(io.BytesIO(data), 10)] == parts


@pytest.mark.parametrize(("size", "hint"), [
    (0, 0), (5000, 5000), (3 * MIN_SIZE, 3 * MIN_SIZE),  # read whole
    (5000, 10), (MAX_SIZE + 5, MAX_SIZE), (5000, 9000),  # grew or shrank since its stat
    (20 * 1024 * 1024, 20 * 1024 * 1024)])  # streamed
def test_file_chunks_are_the_chunks_of_the_whole_file(tmp_path: Path, size: int,
                                                      hint: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert [bytes(c) for c in file_chunks(str(path), hint)] == cut(data)


@pytest.mark.parametrize("size", [0, 1, MIN_SIZE - 1, MIN_SIZE, MIN_SIZE + 1])
def test_small_files_are_one_chunk(size: int) -> None:
    data = os.urandom(size)
    assert cut(data) == ([data] if size else [])


def test_edit_changes_only_nearby_chunks() -> None:
    data = bytearray(os.urandom(20 * 1024 * 1024))
    before = set(cut(bytes(data)))
    data[len(data) // 2] ^= 0xFF
    after = cut(bytes(data))
    assert len([c for c in after if c not in before]) <= 3


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=5000) | st.just(b"a" * 10000))
def test_blob_round_trip(data: bytes) -> None:
    blob_id = KEYS.chunk_id_of(data)
    sealed = seal_blob(KEYS, BlobType.DATA, blob_id, data)
    assert open_blob(KEYS, BlobType.DATA, blob_id, sealed) == data
    with pytest.raises(DamagedBlob):  # a data blob is not a tree blob
        open_blob(KEYS, BlobType.TREE, blob_id, sealed)
    if data:
        assert data not in sealed or len(data) < 4


def test_compression_only_when_smaller() -> None:
    text = b"abc" * 10000
    noise = os.urandom(10000)
    assert len(compress(text)) < len(text) / 10
    assert compress(noise) == b"\0" + noise
    assert decompress(compress(text)) == text
    with pytest.raises(DamagedBlob):
        decompress(b"\1garbage")


def test_wrong_id_is_rejected() -> None:
    data, other = b"one", b"two"
    sealed = seal_blob(KEYS, BlobType.DATA, KEYS.chunk_id_of(other), data)
    with pytest.raises(DamagedBlob, match="does not match"):
        open_blob(KEYS, BlobType.DATA, KEYS.chunk_id_of(other), sealed)


def test_pack_header_and_index_round_trip() -> None:
    writer = PackWriter(target_size=100)
    blobs = [os.urandom(40), os.urandom(70), b""]
    for b in blobs:
        bid = KEYS.chunk_id_of(b)
        writer.add(BlobType.DATA, bid, seal_blob(KEYS, BlobType.DATA, bid, b), len(b))
    assert writer.full
    pack = writer.finish(KEYS)
    assert len(writer) == 0 and not writer.full
    entries = read_header(KEYS, pack.data)
    assert entries == list(pack.entries)
    for e, b in zip(entries, blobs, strict=True):
        assert open_blob(KEYS, e.kind, e.blob_id, pack.data[e.offset:e.offset + e.length]) == b
    with pytest.raises(DamagedBlob):
        read_header(Keys.derive(b"x" * 32), pack.data)
    index_id, sealed = encode_index(KEYS, [(pack.pack_id, pack.entries)])
    index = Index()
    decode_index(KEYS, sealed, index)
    assert len(index) == 3 and index.packs() == {pack.pack_id}
    loc = index.get(entries[1].blob_id)
    assert loc is not None and (loc.offset, loc.length) == (entries[1].offset, entries[1].length)
    assert (loc.kind, loc.raw_length, loc.pack_id) == (BlobType.DATA, 70, pack.pack_id)
    assert len(index_id) == 64


def test_first_packs_ramp_up_to_the_target_size() -> None:
    """A backup's first packs are small (its uploads start early), each next one twice as
    big, then all of the target size."""
    writer = PackWriter(target_size=1000, first_size=250)
    sizes = []
    for _ in range(5):
        while not writer.full:
            b = os.urandom(10)
            bid = KEYS.chunk_id_of(b)
            writer.add(BlobType.DATA, bid, seal_blob(KEYS, BlobType.DATA, bid, b), len(b))
        sizes.append(writer.size)
        writer.finish(KEYS)
    assert [s // 50 for s in sizes] == [5, 10, 20, 20, 20]  # 250, 500, 1000, ... (+ a blob)


@pytest.mark.parametrize(("path", "patterns", "expected"), [
    ("/home/a/x.tmp", ["*.tmp"], True),
    ("/home/a/x.tmp/y", ["*.tmp"], False),  # only the base name is matched
    ("/home/a/.cache", [".cache"], True),
    ("/home/a/build/out", ["build/out"], True),
    ("/home/a/rebuild/out", ["build/out"], False),
    ("/home/a/Downloads", ["/home/*/Downloads"], True),
    ("/x/home/a/Downloads", ["/home/*/Downloads"], False),
    ("/home/a/keep", ["*.tmp", "/nope"], False),
    ("/home/a/keep", ["", "/"], False),
])
def test_exclude_patterns(path: str, patterns: list[str], expected: bool) -> None:
    from p2pbak.datapath.excludes import excluded

    assert excluded(path, patterns) is expected


def test_big_blobs_compress_unless_samples_say_no() -> None:
    noise = os.urandom(1024 * 1024)
    text = b"the quick brown fox " * 50000
    assert compress(noise)[:1] == b"\0" and len(compress(noise)) == len(noise) + 1
    assert compress(text)[:1] == b"\1" and len(compress(text)) < len(text) // 50
    # Noisy start and end, compressible middle: one shrinking sample is enough to try.
    mixed = noise[:20000] + b"\0" * 500000 + noise[:20000]
    assert compress(mixed)[:1] == b"\1" and decompress(compress(mixed)) == mixed
