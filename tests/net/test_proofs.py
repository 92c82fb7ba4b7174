"""Storage proofs (p2pbak.net.proofs): honest proofs verify for every size and index; any
change to a block, an index, a path or the root is caught."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.net import proofs
from p2pbak.net.proofs import LEAF, BadProof, Proof

sizes = st.one_of(st.integers(0, 3 * LEAF + 7), st.sampled_from([LEAF, 2 * LEAF, 5 * LEAF + 1,
                                                                 33 * LEAF]))


@st.composite
def fragment(draw: st.DrawFn) -> bytes:
    size = draw(sizes)
    return draw(st.binary(min_size=size, max_size=size)) if size < 200 else \
        random.Random(draw(st.integers(0, 2**32))).randbytes(size)


@settings(max_examples=40, deadline=None)
@given(fragment(), st.data())
def test_honest_proofs_verify_and_the_builder_agrees(data: bytes, draw: st.DataObject) -> None:
    root = proofs.root(data)
    b = proofs.RootBuilder()
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=4)))
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        b.update(data[start:end])  # any pieces, in order
    assert b.hexroot() == root
    n = proofs.leaf_count(len(data))
    index = draw.draw(st.integers(0, n - 1))
    (proof,) = proofs.prove(data, [index])
    proofs.verify(root, len(data), proof)
    assert proof.block == data[index * LEAF:(index + 1) * LEAF]
    assert Proof.from_dict(proof.to_dict()) == proof


@settings(max_examples=40, deadline=None)
@given(fragment(), st.data())
def test_any_tampering_is_caught(data: bytes, draw: st.DataObject) -> None:
    root = proofs.root(data)
    n = proofs.leaf_count(len(data))
    index = draw.draw(st.integers(0, n - 1))
    (proof,) = proofs.prove(data, [index])
    how = draw.draw(st.sampled_from(["block", "index", "path", "root", "size"]))
    if how == "block":
        if not proof.block:
            return
        pos = draw.draw(st.integers(0, len(proof.block) - 1))
        flipped = bytearray(proof.block)
        flipped[pos] ^= 1 << draw.draw(st.integers(0, 7))
        bad, size = Proof(index, bytes(flipped), proof.path), len(data)
    elif how == "index":
        if n == 1:
            return
        other = (index + draw.draw(st.integers(1, n - 1))) % n
        bad, size = Proof(other, proof.block, proof.path), len(data)
    elif how == "path":
        if not proof.path:
            return
        k = draw.draw(st.integers(0, len(proof.path) - 1))
        path = list(proof.path)
        path[k] = bytes([path[k][0] ^ 1]) + path[k][1:]
        bad, size = Proof(index, proof.block, tuple(path)), len(data)
    elif how == "root":
        root = proofs.root(data + b"x")
        bad, size = proof, len(data)
    else:
        bad, size = proof, len(data) + LEAF
    with pytest.raises(BadProof):
        proofs.verify(root, size, bad)


def test_a_holder_without_the_data_cannot_answer() -> None:
    """Random bytes of the right length, with a made-up path, never verify."""
    data = bytes(range(256)) * 64  # 4 leaves
    root = proofs.root(data)
    indices = proofs.challenge_indices(b"nonce", len(data), 3)
    assert len(set(indices)) == 3 and all(0 <= i < 4 for i in indices)
    assert proofs.challenge_indices(b"nonce", len(data), 3) == indices  # reproducible
    honest = [p.to_dict() for p in proofs.prove(data, indices)]
    proofs.verify_answer(root, len(data), indices, honest)
    liar = [Proof(i, bytes(LEAF), (bytes(32), bytes(32))).to_dict() for i in indices]
    with pytest.raises(BadProof):
        proofs.verify_answer(root, len(data), indices, liar)
    with pytest.raises(BadProof):  # an answer for other blocks
        proofs.verify_answer(root, len(data), indices[::-1], honest)
    with pytest.raises(BadProof):
        proofs.verify_answer(root, len(data), indices, [{"index": "x"}] * 3)
