"""`check`: is every snapshot whole? Trees readable, chunks indexed, packs placed.

The walk over every snapshot's trees is shared with prune (which must know every blob a
snapshot uses before it drops anything). With `read_data`, every indexed pack is fetched,
decoded (which checks its id), and every blob in it opened (which checks its AEAD tag and
its chunk id) and compared with the pack's own header; with a `Subset` (restic's
`--read-data-subset`), only the packs it selects.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2pbak.datapath.blobs import BlobType, open_blob
from p2pbak.datapath.crypto import DamagedBlob, Keys
from p2pbak.datapath.index import Index, decode_index
from p2pbak.datapath.pack import PackEntry, entries_from_rows, read_header
from p2pbak.datapath.reader import BlobReader
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.snapshots import SnapshotRecord, decode_snapshot
from p2pbak.datapath.tree import DIR, FILE
from p2pbak.errors import P2pbakError


class GarbageRepository(Repository, Protocol):
    """What check and prune need beyond the data path's repository."""

    async def list_packs(self) -> dict[str, int]: ...

    async def pack_placements(self, pack_ids: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def drop_packs(self, pack_ids: Sequence[str]) -> dict[str, int]: ...


class PackEntries:
    """One index blob's content, pack by pack (decode_index fills it like an Index)."""

    def __init__(self) -> None:
        self.packs: dict[str, dict[str, PackEntry]] = {}

    def add_pack(self, pack_id: str, entries: Sequence[PackEntry] | object) -> None:
        into = self.packs.setdefault(pack_id, {})
        for e in entries:  # type: ignore[attr-defined]
            into.setdefault(e.blob_id, e)

    def add_rows(self, pack_id: str, rows: Iterable[Sequence[Any]]) -> None:
        self.add_pack(pack_id, entries_from_rows(rows))


@dataclass
class Loaded:
    """Everything the client knows: snapshots, the merged index, each index blob's packs."""

    snapshots: list[SnapshotRecord]
    index: Index
    blobs: dict[str, PackEntries]  # index blob id → its packs
    problems: list[str] = field(default_factory=list)

    def packs_of(self, blobs: set[str]) -> set[str]:
        """The packs (per the merged index) holding any of these blobs."""
        return {loc.pack_id for b in blobs if (loc := self.index.get(b))}

    def indexed(self) -> dict[str, dict[str, PackEntry]]:
        merged: dict[str, dict[str, PackEntry]] = {}
        for entries in self.blobs.values():
            for pack_id, blobs in entries.packs.items():
                merged.setdefault(pack_id, {}).update(blobs)
        return merged


async def load(repo: Repository, keys: Keys) -> Loaded:
    """Snapshots and index blobs, each decoded on its own so a damaged one is a problem,
    not a failure of the whole run."""
    problems: list[str] = []
    snap_ids, index_ids = await asyncio.gather(repo.list_snapshots(), repo.list_indexes())
    sealed = await asyncio.gather(*(repo.get_snapshot(i) for i in snap_ids))
    records = []
    for sid, blob in zip(snap_ids, sealed, strict=True):
        try:
            records.append(decode_snapshot(keys, sid, blob))
        except (DamagedBlob, KeyError, ValueError, TypeError) as exc:
            problems.append(f"snapshot {sid[:8]}: cannot be decrypted ({exc})")
    index, blobs = Index(), {}
    for iid, blob in zip(index_ids, await asyncio.gather(
            *(repo.get_index(i) for i in index_ids)), strict=True):
        entries = PackEntries()
        try:
            decode_index(keys, blob, entries)  # type: ignore[arg-type]
        except (DamagedBlob, KeyError, ValueError, TypeError) as exc:
            problems.append(f"index {iid[:12]}: cannot be decrypted ({exc})")
            continue
        blobs[iid] = entries
        for pack_id, found in entries.packs.items():
            index.add_pack(pack_id, found.values())
    records.sort(key=lambda r: (r.time, r.id))
    return Loaded(records, index, blobs, problems)


@dataclass
class Walk:
    used: set[str] = field(default_factory=set)  # tree and chunk ids some snapshot uses
    trees: int = 0
    problems: list[str] = field(default_factory=list)


async def load_and_walk(repo: Repository, keys: Keys, forgotten: frozenset[str] = frozenset()
                        ) -> tuple[Loaded, Walk]:
    """Load everything, then walk every snapshot's trees (those in `forgotten` left out)."""
    loaded = await load(repo, keys)
    loaded.snapshots = [r for r in loaded.snapshots if r.id not in forgotten]
    reader = BlobReader(repo, keys, loaded.index)
    try:
        walked = await walk(reader, loaded.snapshots)
    finally:
        reader.close()
    return loaded, walked


async def walk(reader: BlobReader, records: Sequence[SnapshotRecord]) -> Walk:
    """Every tree of every snapshot (each once); chunks must be in the index."""
    out = Walk()
    for record in records:
        stack = [(record.tree, "/")]
        while stack:
            tree_id, path = stack.pop()
            if tree_id in out.used:
                continue
            out.used.add(tree_id)
            out.trees += 1
            try:
                nodes = await reader.tree(tree_id)
            except P2pbakError as exc:
                out.problems.append(f"snapshot {record.short_id}: tree {tree_id[:12]} of "
                                    f"{path} cannot be read: {exc}")
                continue
            for node in nodes:
                if node.type == DIR:
                    stack.append((node.subtree, f"{path}{node.display_name}/"))
                elif node.type == FILE:
                    _chunks(reader.index, record, f"{path}{node.display_name}",
                            node.content, out)
    return out


def _chunks(index: Index, record: SnapshotRecord, path: str, content: Sequence[str],
            out: Walk) -> None:
    for chunk in content:
        if chunk in out.used:
            continue
        out.used.add(chunk)
        loc = index.get(chunk)
        if loc is None or loc.kind != BlobType.DATA:
            out.problems.append(f"snapshot {record.short_id}: {path}: chunk {chunk[:12]} "
                                "is missing from the index")


GROUPS_MAX = 256  # n/m groups packs by the first byte of their id, as restic does
_GROUP = re.compile(r"([0-9]+)/([0-9]+)", re.ASCII)
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%", re.ASCII)


@dataclass(frozen=True)
class Subset:
    """Which packs `check --read-data-subset` reads: the n-th of m groups (by the first
    byte of the pack id, so 1/m … m/m together read every pack once), or a random share."""

    group: int = 0  # n, from 1; 0: a random `percent` of the packs
    groups: int = 0  # m
    percent: float = 100.0

    def choose(self, pack_ids: Sequence[str], rng: random.Random | None = None) -> list[str]:
        ids = sorted(pack_ids)
        if self.group:
            return [p for p in ids if int(p[:2], 16) % self.groups == self.group - 1]
        count = math.ceil(len(ids) * self.percent / 100)
        return sorted((rng or random.SystemRandom()).sample(ids, count))


def parse_subset(text: str) -> Subset:
    """'n/m' (1 ≤ n ≤ m ≤ 256) or 'N%' (0 < N ≤ 100); a one-line error otherwise."""
    group, percent = _GROUP.fullmatch(text.strip()), _PERCENT.fullmatch(text.strip())
    if group is not None:
        n, m = int(group[1]), int(group[2])
        if 1 <= n <= m <= GROUPS_MAX:
            return Subset(n, m)
    elif percent is not None and 0 < float(percent[1]) <= 100:
        return Subset(percent=float(percent[1]))
    raise P2pbakError(f"cannot read --read-data-subset {text!r}: give n/m with 1 <= n <= m "
                      f"<= {GROUPS_MAX} (e.g. 1/5) or a percentage above 0 up to 100 (e.g. 10%)")


@dataclass
class CheckResult:
    snapshots: int = 0
    trees: int = 0
    blobs: int = 0
    packs: int = 0
    packs_read: int = 0
    unindexed_packs: int = 0  # committed, listed in no index: prune drops them
    problems: list[str] = field(default_factory=list)


async def check(repo: GarbageRepository, master: bytes, read_data: bool = False,
                progress: Callable[[int, int], None] | None = None,
                subset: Subset | None = None) -> CheckResult:
    keys = Keys.derive(master)
    loaded, walked = await load_and_walk(repo, keys)
    indexed = loaded.indexed()
    result = CheckResult(len(loaded.snapshots), walked.trees, len(walked.used), len(indexed),
                         problems=loaded.problems + walked.problems)
    committed = await repo.list_packs()
    result.unindexed_packs = len(set(committed) - set(indexed))
    result.problems += await placement_problems(repo, indexed, committed)
    if read_data:
        result.packs_read, bad = await read_packs(repo, keys, indexed, committed, progress,
                                                  subset)
        result.problems += bad
    return result


async def placement_problems(repo: GarbageRepository, indexed: dict[str, dict[str, PackEntry]],
                             committed: dict[str, int]) -> list[str]:
    problems = [f"pack {p[:12]} is in the index but not stored with the coordinator"
                for p in sorted(indexed) if p not in committed]
    placed = await repo.pack_placements([p for p in sorted(indexed) if p in committed])
    for pack_id, info in sorted(placed.items()):
        if info["placed"] < info["k"]:
            problems.append(f"pack {pack_id[:12]}: only {info['placed']} of the {info['k']} "
                            "fragments needed are on known peers: it cannot be restored")
    return problems


async def read_packs(repo: Repository, keys: Keys, indexed: dict[str, dict[str, PackEntry]],
                     committed: dict[str, int],
                     progress: Callable[[int, int], None] | None,
                     subset: Subset | None = None) -> tuple[int, list[str]]:
    """Fetch and verify every indexed, committed pack (those `subset` selects), two at a
    time."""
    todo = [p for p in sorted(indexed) if p in committed]
    if subset is not None:
        todo = subset.choose(todo)
    slots = asyncio.Semaphore(2)
    problems: list[str] = []
    done = 0

    async def one(pack_id: str) -> None:
        nonlocal done
        async with slots:
            try:
                data = await repo.get_pack(pack_id)
            except P2pbakError as exc:
                problems.append(f"pack {pack_id[:12]} cannot be read: {exc}")
                data = None
        if data is not None:
            problems.extend(await asyncio.to_thread(verify_pack, keys, pack_id, data,
                                                    indexed[pack_id]))
        done += 1
        if progress is not None:
            progress(done, len(todo))

    await asyncio.gather(*(one(p) for p in todo))
    return len(todo), sorted(problems)


def verify_pack(keys: Keys, pack_id: str, data: bytes,
                expected: dict[str, PackEntry]) -> list[str]:
    """Problems of one fetched pack: its header against the index, every blob opened."""
    short = pack_id[:12]
    try:
        header = {e.blob_id: e for e in read_header(keys, data)}
    except (P2pbakError, ValueError, KeyError, TypeError) as exc:
        return [f"pack {short}: header cannot be read ({exc})"]
    problems = [f"pack {short}: blob {b[:12]} in the index does not match the pack header"
                for b, e in expected.items() if header.get(b) != e]
    view = memoryview(data)
    for e in header.values():
        try:
            open_blob(keys, e.kind, e.blob_id, view[e.offset:e.offset + e.length])
        except P2pbakError as exc:
            problems.append(f"pack {short}: blob {e.blob_id[:12]} is damaged ({exc})")
    return problems
