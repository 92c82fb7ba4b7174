"""`prune`: drop the packs no snapshot uses, so stored and paid-for bytes agree.

Only the client can read trees and indexes, so the client decides: it walks every
snapshot (check.walk), keeps every pack holding a blob in use, and drops the rest: packs
whose blobs no snapshot uses any more, and committed packs no index lists (an interrupted
backup's). A pack with some blob in use is kept whole, unless `max_unused` is given: then
the packs with the largest unused share are repacked (datapath.repack): their used blobs are
copied into new packs, indexed (step 0, before anything is deleted), and the old packs are
dropped with the others.

Order, so a crash at any step loses nothing a snapshot needs: (1) index blobs that list
dropped packs are rewritten without them (new blob first), (2) the old ones are deleted,
(3) the coordinator drops the packs and queues their fragments on the suppliers' delete
lists. A crash after (1) leaves duplicate index entries (harmless), after (2) unindexed
packs that the next prune drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pbak.datapath.check import GarbageRepository, Loaded, load_and_walk
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.index import encode_index
from p2pbak.datapath.repack import KeptPack, choose, copy_used
from p2pbak.errors import P2pbakError


@dataclass
class PrunePlan:
    drop: dict[str, int] = field(default_factory=dict)  # pack id → length
    keep: int = 0  # packs kept
    kept_bytes: int = 0
    unused_in_kept: int = 0  # sealed bytes of unused blobs in kept packs
    rewrite: dict[str, list[str]] = field(default_factory=dict)  # index blob → packs kept
    repack: list[KeptPack] = field(default_factory=list)  # kept packs to copy and drop
    skip: dict[str, str] = field(default_factory=dict)  # blob id → a staying pack holding it

    @property
    def drop_bytes(self) -> int:
        return sum(self.drop.values())

    @property
    def repack_unused(self) -> int:
        return sum(p.unused for p in self.repack)


@dataclass
class PruneResult:
    plan: PrunePlan
    dry_run: bool
    packs_dropped: int = 0
    bytes_freed: int = 0  # pack bytes no longer stored (and no longer billed)
    fragment_bytes_freed: int = 0  # bytes the suppliers delete
    indexes_rewritten: int = 0
    packs_written: int = 0  # new packs holding the used blobs of repacked ones
    bytes_written: int = 0


async def plan(repo: GarbageRepository, keys: Keys, forgotten: frozenset[str] = frozenset(),
               max_unused: float | None = None) -> tuple[PrunePlan, Loaded]:
    """What to drop; snapshots in `forgotten` count as gone (a dry run of forget); with
    `max_unused`, which kept packs to repack (datapath.repack)."""
    loaded, walked = await load_and_walk(repo, keys, forgotten)
    problems = loaded.problems + walked.problems
    if problems:
        raise P2pbakError(f"prune stopped, nothing deleted: {problems[0]} ({len(problems)} "
                          "problem(s)); run `p2pbak check` and fix the repository first")
    used_packs = loaded.packs_of(walked.used)
    committed = await repo.list_packs()
    indexed = loaded.indexed()
    out = PrunePlan()
    kept: list[KeptPack] = []
    for pack_id, length in committed.items():
        if pack_id not in used_packs:
            out.drop[pack_id] = length
            continue
        out.keep += 1
        out.kept_bytes += length
        blobs = indexed.get(pack_id, {})
        unused = sum(e.length for b, e in blobs.items() if b not in walked.used)
        out.unused_in_kept += unused
        kept.append(KeptPack(pack_id, length, unused,
                             tuple(e for b, e in blobs.items() if b in walked.used)))
    if max_unused is not None:
        out.repack = choose(kept, max_unused)
    moving = {p.pack_id for p in out.repack}
    out.skip = {b: loc.pack_id for b in walked.used if (loc := loaded.index.get(b))
                and loc.pack_id in used_packs and loc.pack_id not in moving}
    gone = set(out.drop) | moving | (set(indexed) - set(committed) - used_packs)
    for blob_id, entries in loaded.blobs.items():
        if gone & set(entries.packs):
            out.rewrite[blob_id] = [p for p in entries.packs if p not in gone]
    return out, loaded


async def prune(repo: GarbageRepository, master: bytes, dry_run: bool = False,
                forgotten: frozenset[str] = frozenset(),
                max_unused: float | None = None) -> PruneResult:
    keys = Keys.derive(master)
    todo, loaded = await plan(repo, keys, forgotten, max_unused)
    result = PruneResult(todo, dry_run)
    if dry_run:
        return result
    if todo.repack:  # (0) the used blobs into new packs, indexed, before anything goes
        copied = await copy_used(repo, keys, todo.repack, todo.skip)
        result.packs_written, result.bytes_written = len(copied.packs), copied.bytes_written
    for blob_id, keep in todo.rewrite.items():
        if keep:
            packs = loaded.blobs[blob_id].packs
            new_id, sealed = encode_index(keys, [(p, list(packs[p].values())) for p in keep])
            await repo.put_index(new_id, sealed)
    for blob_id in todo.rewrite:
        await repo.delete_index(blob_id)
    result.indexes_rewritten = len(todo.rewrite)
    doomed = sorted(set(todo.drop) | {p.pack_id for p in todo.repack})
    if doomed:
        dropped = await repo.drop_packs(doomed)
        result.packs_dropped = dropped["packs"]
        result.bytes_freed = dropped["bytes"]
        result.fragment_bytes_freed = dropped["fragment_bytes"]
    return result
