"""`stats`: what a set of snapshots holds and what it costs to keep (restic's stats, plus
what the erasure code adds).

restore size: file bytes a restore writes (each snapshot counted whole, as restic does);
raw data: the distinct chunks and trees they use, before sealing; stored: the packs holding
them, as the coordinator counts them (`status` shows the same sum for the whole repository);
on suppliers: the fragments placed for those packs, headers included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p2pbak.datapath.browse import open_reader, walk
from p2pbak.datapath.check import GarbageRepository
from p2pbak.datapath.erasure import HEADER_LEN, share_length
from p2pbak.datapath.snapshots import SnapshotRecord
from p2pbak.datapath.tree import DIR, FILE


@dataclass
class Stats:
    snapshots: int = 0
    files: int = 0
    restore_bytes: int = 0
    blobs: int = 0  # distinct chunks and trees used
    raw_bytes: int = 0  # their plaintext
    sealed_bytes: int = 0  # sealed (compressed, encrypted)
    packs: int = 0  # packs holding any of them
    stored_bytes: int = 0  # those packs' lengths
    fragments: int = 0  # fragments placed on suppliers for those packs
    fragment_bytes: int = 0
    repository_packs: int = 0  # every pack committed for this user (as `status`)
    repository_bytes: int = 0

    @property
    def dedup_ratio(self) -> float:
        """restore size / raw data: how much deduplication saves (1.0: nothing)."""
        return round(self.restore_bytes / self.raw_bytes, 4) if self.raw_bytes else 0.0

    @property
    def erasure_expansion(self) -> float:
        """bytes on suppliers / bytes stored: what the erasure code adds."""
        return round(self.fragment_bytes / self.stored_bytes, 4) if self.stored_bytes else 0.0


async def stats(repo: GarbageRepository, master: bytes,
                records: Sequence[SnapshotRecord]) -> Stats:
    reader = await open_reader(repo, master)
    out = Stats(snapshots=len(records))
    used: set[str] = set()
    try:
        for record in records:
            used.add(record.tree)
            async for _, node in walk(reader, record.tree):
                if node.type == FILE:
                    out.files += 1
                    out.restore_bytes += node.size
                    used.update(node.content)
                elif node.type == DIR:
                    used.add(node.subtree)
    finally:
        reader.close()
    packs: set[str] = set()
    for blob_id in used:
        loc = reader.index.get(blob_id)
        if loc is not None:
            out.blobs += 1
            out.raw_bytes += loc.raw_length
            out.sealed_bytes += loc.length
            packs.add(loc.pack_id)
    committed = await repo.list_packs()
    out.repository_packs, out.repository_bytes = len(committed), sum(committed.values())
    placed = await repo.pack_placements(sorted(packs))
    for pack_id in packs & committed.keys():
        out.packs += 1
        out.stored_bytes += committed[pack_id]
        where = placed.get(pack_id)
        if where is not None:
            out.fragments += where["placed"]
            out.fragment_bytes += where["placed"] * (
                share_length(committed[pack_id], where["k"]) + HEADER_LEN)
    return out
