"""Fragments: any k decode, damage and foreign fragments are detected and skipped."""

from __future__ import annotations

import itertools
import os
import random

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.datapath.erasure import (
    HEADER_LEN,
    CorruptFragment,
    NotEnoughFragments,
    decode_pack,
    encode_pack,
    fragment_id,
    parse_fragment,
)


def pack(size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    return blake3.blake3(data).hexdigest(), data


@pytest.mark.parametrize(("k", "n", "size"),
                         [(1, 2, 0), (1, 3, 1), (2, 3, 5), (3, 6, 100), (4, 7, 4097), (5, 8, 33)])
def test_every_k_subset_decodes(k: int, n: int, size: int) -> None:
    pid, data = pack(size)
    fragments = encode_pack(pid, data, k, n)
    assert len(fragments) == n
    assert len({fragment_id(f) for f in fragments}) == n
    for subset in itertools.combinations(fragments, k):
        assert decode_pack(pid, subset) == data
    for subset in itertools.combinations(fragments, k - 1):
        with pytest.raises(NotEnoughFragments):
            decode_pack(pid, subset)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000), k=st.integers(1, 12), extra=st.integers(0, 12),
       seed=st.integers(0, 2**32))
def test_random_subsets_decode(data: bytes, k: int, extra: int, seed: int) -> None:
    n = k + extra
    pid = blake3.blake3(data).hexdigest()
    fragments = encode_pack(pid, data, k, n)
    rng = random.Random(seed)
    subset = rng.sample(fragments, k)
    assert decode_pack(pid, subset) == data
    head = parse_fragment(fragments[-1])
    assert (head.pack_id, head.k, head.n, head.index, head.pack_length) == (pid, k, n, n - 1,
                                                                           len(data))


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_flipped_byte_is_detected_and_skipped(position: int, bit: int) -> None:
    pid, data = pack(1000)
    fragments = encode_pack(pid, data, 3, 5)
    bad = bytearray(fragments[0])
    bad[position % len(bad)] ^= 1 << bit
    with pytest.raises(CorruptFragment):
        parse_fragment(bytes(bad))
    # The damaged one is skipped; the others still restore the pack.
    assert decode_pack(pid, [bytes(bad), *fragments[1:4]]) == data
    with pytest.raises(NotEnoughFragments):
        decode_pack(pid, [bytes(bad), *fragments[1:3]])


def test_foreign_and_truncated_fragments_are_skipped() -> None:
    pid, data = pack(500)
    other_id, other = pack(500)
    mine = encode_pack(pid, data, 2, 4)
    theirs = encode_pack(other_id, other, 2, 4)
    mixed = [theirs[0], mine[0][:HEADER_LEN - 1], b"", mine[0][:-1], theirs[1], mine[3], mine[1]]
    assert decode_pack(pid, mixed) == data
    with pytest.raises(NotEnoughFragments, match="only 1 of 2"):
        decode_pack(pid, [theirs[0], theirs[1], mine[2]])


def test_consistent_forgery_is_caught_by_pack_id() -> None:
    # A fragment re-encoded from other bytes under our pack id passes its own checksum
    # but cannot produce bytes hashing to the pack id.
    pid, _ = pack(300)
    forged = encode_pack(pid, os.urandom(300), 2, 3)
    with pytest.raises(CorruptFragment, match="wrong bytes"):
        decode_pack(pid, forged[1:])


def test_decode_stops_reading_after_k() -> None:
    pid, data = pack(2000)
    fragments = encode_pack(pid, data, 3, 6)
    consumed = []

    def lazy():
        for f in fragments:
            consumed.append(f)
            yield f

    assert decode_pack(pid, lazy()) == data
    assert len(consumed) == 3


def test_bad_parameters() -> None:
    pid, data = pack(10)
    for k, n in [(0, 3), (4, 3), (2, 257)]:
        with pytest.raises(Exception, match="erasure code"):
            encode_pack(pid, data, k, n)
    with pytest.raises(Exception, match="pack id"):
        encode_pack("zz", data, 1, 2)


def test_striped_coding_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import p2pbak.datapath.erasure as erasure

    pid, data = pack(3 * 200 * 1024 + 7)
    monkeypatch.setattr(erasure.os, "cpu_count", lambda: 3)
    assert len(erasure._stripe_bounds(200 * 1024 + 3)) == 4  # three stripes
    striped = encode_pack(pid, data, 3, 7)
    for subset in ([4, 5, 6], [0, 3, 6], [1, 2, 5]):
        assert decode_pack(pid, [striped[i] for i in subset]) == data
    monkeypatch.setattr(erasure, "_STRIPE_MIN", 1 << 30)
    assert len(erasure._stripe_bounds(200 * 1024 + 3)) == 2  # one stripe
    assert encode_pack(pid, data, 3, 7) == striped
    assert decode_pack(pid, striped[4:]) == data
