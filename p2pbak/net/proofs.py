"""Storage proofs: a Merkle tree over a fragment's 4 KiB blocks (BLAKE3), pure code.

Shared by the consumer (the root it commits), the holder (the root it checks on store and
the proofs it answers challenges with) and the coordinator (which verifies the proofs
itself, Sia-style). Format (docs/formats.md, "Storage proofs"):

* leaves: the fragment cut into `LEAF` = 4096-byte blocks, the last one possibly shorter
  (an empty fragment is one empty leaf); leaf hash = BLAKE3(0x00 ‖ u64be(index) ‖ block);
* inner node = BLAKE3(0x01 ‖ left ‖ right); a level of odd length carries its last node up
  unchanged; root = BLAKE3(0x02 ‖ u64be(size) ‖ top node), hex (the size is bound in: a
  tree of other length cannot share a root). The leaf index in the leaf hash and the
  domain bytes stop a leaf being passed off as a node or as another leaf;
* a challenge is (nonce, leaf indices); the answer gives each block and its sibling path,
  bottom up; the verifier recomputes the root from (size, index, block, path).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from p2pbak.errors import BadProof

LEAF = 4096
MAX_CHALLENGE = 64  # leaf indices per challenge


def leaf_count(size: int) -> int:
    return max(1, -(-size // LEAF))


def _leaf(index: int, block: bytes) -> bytes:
    return blake3.blake3(b"\x00" + index.to_bytes(8, "big") + block).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def _seal(size: int, top: bytes) -> str:
    return blake3.blake3(b"\x02" + size.to_bytes(8, "big") + top).hexdigest()


def _up(level: list[bytes]) -> list[bytes]:
    nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])
    return nxt


class RootBuilder:
    """The root of bytes fed in any pieces (a peer hashes a fragment as it arrives)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._leaves: list[bytes] = []
        self.size = 0

    def update(self, data: bytes) -> None:
        self._pending += data
        self.size += len(data)
        while len(self._pending) >= LEAF:
            self._leaves.append(_leaf(len(self._leaves), bytes(self._pending[:LEAF])))
            del self._pending[:LEAF]

    def hexroot(self) -> str:
        leaves = list(self._leaves)
        if self._pending or not leaves:
            leaves.append(_leaf(len(leaves), bytes(self._pending)))
        while len(leaves) > 1:
            leaves = _up(leaves)
        return _seal(self.size, leaves[0])


def root(data: bytes) -> str:
    """The Merkle root (hex) of a whole fragment."""
    b = RootBuilder()
    b.update(data)
    return b.hexroot()


@dataclass(frozen=True)
class Proof:
    index: int
    block: bytes
    path: tuple[bytes, ...]  # sibling hashes, bottom up (a carried-up level has none)

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "block": base64.b64encode(self.block).decode(),
                "path": [h.hex() for h in self.path]}

    @classmethod
    def from_dict(cls, d: object) -> Proof:
        try:
            assert isinstance(d, dict)
            index, block, path = d["index"], d["block"], d["path"]
            assert isinstance(index, int) and isinstance(block, str) and isinstance(path, list)
            assert len(path) <= 64 and all(isinstance(h, str) and len(h) == 64 for h in path)
            return cls(index, base64.b64decode(block, validate=True),
                       tuple(bytes.fromhex(h) for h in path))
        except (AssertionError, KeyError, ValueError, TypeError):
            raise BadProof("malformed proof") from None


def prove(data: bytes, indices: Sequence[int]) -> list[Proof]:
    """Answer a challenge: each asked block with its sibling path."""
    n = leaf_count(len(data))
    level = [_leaf(i, data[i * LEAF:(i + 1) * LEAF]) for i in range(n)]
    levels = [level]
    while len(level) > 1:
        level = _up(level)
        levels.append(level)
    out = []
    for index in indices:
        if not 0 <= index < n:
            raise BadProof(f"leaf {index} is not below {n}")
        path, i = [], index
        for lv in levels[:-1]:
            sibling = i ^ 1
            if sibling < len(lv):
                path.append(lv[sibling])
            i //= 2
        out.append(Proof(index, data[index * LEAF:(index + 1) * LEAF], tuple(path)))
    return out


def verify(hexroot: str, size: int, proof: Proof) -> None:
    """Raise BadProof unless `proof` shows its block at its index under `hexroot`."""
    n = leaf_count(size)
    if not 0 <= proof.index < n:
        raise BadProof(f"leaf {proof.index} is not below {n}")
    want = min(LEAF, size - proof.index * LEAF) if size else 0
    if len(proof.block) != want:
        raise BadProof(f"block {proof.index} has {len(proof.block)} bytes, not {want}")
    h, i, width = _leaf(proof.index, proof.block), proof.index, n
    siblings = iter(proof.path)
    while width > 1:
        if i ^ 1 < width:  # a sibling exists at this level
            s = next(siblings, None)
            if s is None:
                raise BadProof("path too short")
            h = _node(h, s) if i % 2 == 0 else _node(s, h)
        i, width = i // 2, (width + 1) // 2
    if next(siblings, None) is not None:
        raise BadProof("path too long")
    if _seal(size, h) != hexroot:
        raise BadProof("the path does not lead to the committed root")


def challenge_indices(nonce: bytes, size: int, count: int) -> list[int]:
    """`count` distinct leaf indices (fewer if the fragment has fewer), derived from the
    nonce so the coordinator need not store them."""
    n = leaf_count(size)
    picked: list[int] = []
    counter = 0
    while len(picked) < min(count, n, MAX_CHALLENGE):
        digest = blake3.blake3(nonce + counter.to_bytes(4, "big")).digest()[:8]
        i = int.from_bytes(digest, "big") % n
        counter += 1
        if i not in picked:
            picked.append(i)
    return picked


def verify_answer(hexroot: str, size: int, indices: Sequence[int],
                  answer: Sequence[object]) -> None:
    """Raise BadProof unless `answer` proves every challenged index, in order."""
    if len(answer) != len(indices):
        raise BadProof(f"{len(answer)} proofs for {len(indices)} challenged blocks")
    for want, raw in zip(indices, answer, strict=True):
        proof = Proof.from_dict(raw)
        if proof.index != want:
            raise BadProof(f"proof for block {proof.index}, block {want} was asked")
        verify(hexroot, size, proof)
