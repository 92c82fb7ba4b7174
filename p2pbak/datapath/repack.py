"""Repacking for prune: the blobs still in use of mostly-unused packs are copied, sealed as
they are (no re-encryption), into new packs, so the old packs can be dropped whole.

Which packs: restic's `--max-unused`. The packs with the largest unused share are repacked
first, until the unused bytes left in kept packs are at most `max_unused` × the bytes in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p2pbak.datapath.blobs import BlobType
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import encode_index
from p2pbak.datapath.pack import DEFAULT_PACK_SIZE, PackEntry, PackWriter
from p2pbak.datapath.repository import Repository


@dataclass(frozen=True)
class KeptPack:
    pack_id: str
    length: int
    unused: int  # sealed bytes of blobs no snapshot uses
    used: tuple[PackEntry, ...]  # the blobs to keep


def choose(kept: Sequence[KeptPack], max_unused: float) -> list[KeptPack]:
    """The packs to repack so the unused share of what stays is at most `max_unused`."""
    in_use = sum(p.length - p.unused for p in kept)
    left = sum(p.unused for p in kept)
    out = []
    for pack in sorted(kept, key=lambda p: (-p.unused / max(p.length, 1), p.pack_id)):
        if left <= max_unused * in_use or pack.unused == 0:
            break
        out.append(pack)
        left -= pack.unused
    return out


@dataclass
class Copied:
    packs: list[tuple[str, tuple[PackEntry, ...]]]  # the new packs and their blobs
    bytes_written: int = 0


async def copy_used(repo: Repository, keys: Keys, chosen: Sequence[KeptPack],
                    skip: Mapping[str, str], pack_size: int = DEFAULT_PACK_SIZE) -> Copied:
    """Upload new packs holding the used blobs of `chosen`, then one index blob listing them
    (so a crash after this leaves only duplicates). `skip`: blob id → a pack that stays and
    already holds it."""
    writers = {BlobType.DATA: PackWriter(pack_size), BlobType.TREE: PackWriter(pack_size)}
    out = Copied([])
    seen: set[str] = set()

    async def flush(writer: PackWriter) -> None:
        if len(writer):
            pack = writer.finish(keys)
            await repo.put_pack(pack.pack_id, pack.data)
            out.packs.append((pack.pack_id, pack.entries))
            out.bytes_written += len(pack.data)

    for old in chosen:
        data = await repo.get_pack(old.pack_id)
        for e in old.used:
            if e.blob_id in seen or e.blob_id in skip:
                continue
            seen.add(e.blob_id)
            writer = writers[e.kind]
            writer.add(e.kind, e.blob_id, data[e.offset:e.offset + e.length], e.raw_length)
            if writer.full:
                await flush(writer)
    for writer in writers.values():
        await flush(writer)
    if out.packs:
        index_id, blob = encode_index(keys, out.packs)
        await repo.put_index(index_id, blob)
    return out
