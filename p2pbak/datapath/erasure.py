"""Erasure coding of packs into fragments with zfec (k of n), and back.

Fragment layout (docs/formats.md): a fixed header, a BLAKE3 checksum of header and share,
then the share. The checksum lets a reader reject a damaged fragment without its id; the
pack id in the header rejects a fragment of another pack.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import blake3
import zfec

from p2pbak.errors import CorruptFragment, NotEnoughFragments, P2pbakError

MAGIC = b"P2BF"
VERSION = 1
_FIELDS = struct.Struct(">4sB32sHHHQ")  # magic, version, pack id, k, n, index, pack length
CHECKSUM_LEN = 32
HEADER_LEN = _FIELDS.size + CHECKSUM_LEN
MAX_N = 256
T = TypeVar("T")


@dataclass(frozen=True)
class FragmentHeader:
    version: int
    pack_id: str
    k: int
    n: int
    index: int
    pack_length: int
    share_length: int


def fragment_id(fragment: bytes) -> str:
    """A fragment's id: BLAKE3 of its bytes, lowercase hex."""
    return blake3.blake3(fragment).hexdigest()


def share_length(pack_length: int, k: int) -> int:
    """Bytes per share: the pack split in k equal parts, the last one zero-padded."""
    return max(1, -(-pack_length // k))


def check_code(k: int, n: int) -> None:
    if not (1 <= k <= n <= MAX_N):
        raise P2pbakError(f"bad erasure code {k}-of-{n}: need 1 <= k <= n <= {MAX_N}")


def _pack_bytes(pack_id: str) -> bytes:
    try:
        raw = bytes.fromhex(pack_id)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise P2pbakError(f"bad pack id {pack_id!r}: expected 64 hex digits")
    return raw


# Reed-Solomon works on each byte position alone, so the shares can be coded in column
# stripes on several threads (zfec releases the GIL) and joined: the same bytes, and one
# pack keeps every core busy.
_STRIPE_MIN = 64 * 1024
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _stripe_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="zfec")
        return _pool


def _encode_columns(blocks: list[memoryview], k: int, n: int, start: int,
                    stop: int) -> list[bytes | memoryview]:
    return list(zfec.Encoder(k, n).encode(tuple(b[start:stop] for b in blocks)))


def _stripe_bounds(size: int) -> list[int]:
    stripes = max(1, min(os.cpu_count() or 1, size // _STRIPE_MIN))
    return [size * i // stripes for i in range(stripes + 1)]


def _by_stripes(size: int, code: Callable[[int, int], list[T]]) -> list[list[T]]:
    """code(start, stop) for each column stripe, on the pool when there are several."""
    bounds = _stripe_bounds(size)
    if len(bounds) == 2:
        return [code(0, size)]
    return list(_stripe_pool().map(lambda i: code(bounds[i], bounds[i + 1]),
                                   range(len(bounds) - 1)))


def _encode_shares(blocks: list[memoryview], k: int, n: int) -> list[list[bytes | memoryview]]:
    """Each share of the code, as the column stripes that make it up."""
    parts = _by_stripes(len(blocks[0]), lambda a, b: _encode_columns(blocks, k, n, a, b))
    return [[part[index] for part in parts] for index in range(n)]


def encode_pack(pack_id: str, data: bytes, k: int, n: int) -> list[bytes]:
    """The n fragments of a pack; any k of them restore it."""
    check_code(k, n)
    raw_id = _pack_bytes(pack_id)
    size = share_length(len(data), k)
    view = memoryview(data)
    blocks = [view[i * size:(i + 1) * size] for i in range(k)]
    blocks = [b if len(b) == size else memoryview(bytes(b).ljust(size, b"\0")) for b in blocks]
    shares = _encode_shares(blocks, k, n)
    out = []
    for index in range(n):
        # each share's stripes let go once joined: the pack's n shares are not all held
        # twice over (a 16 MiB pack at k=2, n=8 is 64 MiB of fragments)
        parts, shares[index] = shares[index], []
        fields = _FIELDS.pack(MAGIC, VERSION, raw_id, k, n, index, len(data))
        digest = blake3.blake3(fields)
        for part in parts:
            digest.update(part)
        out.append(b"".join([fields, digest.digest(), *parts]))
    return out


def parse_fragment(fragment: bytes) -> FragmentHeader:
    """The header of a fragment whose checksum holds; CorruptFragment otherwise."""
    if len(fragment) < HEADER_LEN:
        raise CorruptFragment("fragment is shorter than its header")
    magic, version, raw_id, k, n, index, length = _FIELDS.unpack_from(fragment)
    if magic != MAGIC:
        raise CorruptFragment("not a p2pbak fragment (bad magic)")
    if version != VERSION:
        raise CorruptFragment(f"fragment format version {version} is not supported")
    if not (1 <= k <= n <= MAX_N and index < n):
        raise CorruptFragment(f"fragment header is damaged ({k}-of-{n}, index {index})")
    view = memoryview(fragment)
    digest = blake3.blake3(view[:_FIELDS.size])
    digest.update(view[HEADER_LEN:])
    if digest.digest() != bytes(view[_FIELDS.size:HEADER_LEN]):
        raise CorruptFragment("fragment checksum mismatch: the fragment is damaged")
    share = len(fragment) - HEADER_LEN
    if share != share_length(length, k):
        raise CorruptFragment("fragment size does not match its header")
    return FragmentHeader(version, raw_id.hex(), k, n, index, length, share)


def decode_pack(pack_id: str, fragments: Iterable[bytes]) -> bytes:
    """The pack from any k valid fragments; damaged or foreign ones are skipped."""
    return b"".join(decode_pack_parts(pack_id, fragments))


def decode_pack_parts(pack_id: str, fragments: Iterable[bytes]) -> list[memoryview]:
    """The pack as pieces that join to it, verified (see decode_pack): from the systematic
    fragments, views of them, so a restore holds each pack once, not twice.

    It consumes `fragments` only until k valid ones of one code are found, so a lazy
    iterable (downloads) can stop early.
    """
    _pack_bytes(pack_id)
    groups: dict[tuple[int, int, int], dict[int, memoryview]] = {}
    seen = skipped = 0
    for fragment in fragments:
        seen += 1
        try:
            head = parse_fragment(fragment)
        except CorruptFragment:
            skipped += 1
            continue
        if head.pack_id != pack_id:
            skipped += 1
            continue
        key = (head.k, head.n, head.pack_length)
        shares = groups.setdefault(key, {})
        shares[head.index] = memoryview(fragment)[HEADER_LEN:]
        if len(shares) == head.k:
            return _decode(pack_id, key, shares)
    need = min((k for k, _, _ in groups), default=None)
    have = max((len(s) for s in groups.values()), default=0)
    want = f"{need}" if need is not None else "k"
    raise NotEnoughFragments(
        f"pack {pack_id[:12]}: only {have} of {want} needed fragments are valid "
        f"({seen} received, {skipped} damaged or foreign); bring more suppliers online")


def _decode_columns(blocks: list[memoryview], indexes: list[int], k: int, n: int,
                    start: int, stop: int) -> list[bytes]:
    return list(zfec.Decoder(k, n).decode([b[start:stop] for b in blocks], indexes))


def _prefix(pieces: list[bytes | memoryview], length: int) -> list[memoryview]:
    """Views of the pieces holding their first `length` bytes (the shares' padding cut)."""
    out: list[memoryview] = []
    for piece in pieces:
        if length <= 0:
            break
        view = memoryview(piece)
        out.append(view[:length])
        length -= len(view)
    return out


def _decode(pack_id: str, key: tuple[int, int, int],
            shares: dict[int, memoryview]) -> list[memoryview]:
    k, n, length = key
    indexes = sorted(shares)
    blocks = [shares[i] for i in indexes]
    if indexes == list(range(k)):  # the systematic shares are the pack itself
        pieces: list[bytes | memoryview] = list(blocks)
    else:
        parts = _by_stripes(len(blocks[0]),
                            lambda a, b: _decode_columns(blocks, indexes, k, n, a, b))
        pieces = [part[i] for i in range(k) for part in parts]
    parts = _prefix(pieces, length)
    digest = blake3.blake3()
    for part in parts:
        digest.update(part)
    if digest.hexdigest() != pack_id:
        raise CorruptFragment(
            f"pack {pack_id[:12]} decodes to the wrong bytes: its fragments were tampered with")
    return parts
