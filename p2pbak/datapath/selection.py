"""Choosing snapshots by host, path and tag (restic's filters), and editing their tags.

`--tag a,b` asks for snapshots holding both a and b; repeating `--tag` widens (any of the
lists). A path filter names a backed-up path exactly, with or without a trailing slash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.repository import Repository
from p2pbak.datapath.retention import Decision
from p2pbak.datapath.snapshots import SnapshotRecord, encode_snapshot


def tag_lists(values: Sequence[str]) -> list[frozenset[str]]:
    """`--tag` values as sets, each an AND of its comma-separated tags."""
    return [frozenset(t.strip() for t in v.split(",") if t.strip()) for v in values
            if v.strip(",").strip()]


def flat_tags(values: Sequence[str]) -> list[str]:
    """`--tag a,b --tag c` as [a, b, c] (what `backup --tag` and `tag --add` record)."""
    return sorted({t for group in tag_lists(values) for t in group})


def has_tags(record: SnapshotRecord, wanted: Sequence[frozenset[str]]) -> bool:
    return not wanted or any(group <= set(record.tags) for group in wanted)


def select(records: Sequence[SnapshotRecord], hosts: Sequence[str] = (),
           paths: Sequence[str] = (), tags: Sequence[str] = ()) -> list[SnapshotRecord]:
    """The records every given filter accepts (an empty filter accepts all)."""
    wanted_paths = {p.rstrip("/") or "/" for p in paths}
    groups = tag_lists(tags)
    return [r for r in records
            if (not hosts or r.host in hosts)
            and (not wanted_paths or wanted_paths <= {p.rstrip("/") or "/" for p in r.paths})
            and has_tags(r, groups)]


def new_tags(current: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = (),
             set_to: Sequence[str] | None = None) -> tuple[str, ...]:
    base = set(current) if set_to is None else set(set_to)
    return tuple(sorted((base | set(add)) - set(remove)))


async def retag(repo: Repository, master: bytes, record: SnapshotRecord,
                tags: Sequence[str]) -> SnapshotRecord:
    """The snapshot saved again with `tags` (a new id, as restic does), the old one removed;
    unchanged tags change nothing. New record first, so a crash loses no snapshot."""
    if tuple(sorted(set(tags))) == tuple(sorted(record.tags)):
        return record
    keys = Keys.derive(master)
    new_id, sealed = encode_snapshot(keys, record.time, record.host, list(record.paths),
                                     record.tree, record.parent, list(record.excludes),
                                     dict(record.summary), tags)
    await repo.put_snapshot(new_id, sealed)
    await repo.delete_snapshot(record.id)
    return replace(record, id=new_id, tags=tuple(sorted(set(tags))))


def keep_tagged(decision: Decision[SnapshotRecord], tags: Sequence[str] | None
                ) -> Decision[SnapshotRecord]:
    """restic's --keep-tag: snapshots holding any of `tags` move from removed to kept."""
    if not tags:
        return decision
    for record in [r for r in decision.remove if set(tags) & set(r.tags)]:
        decision.remove.remove(record)
        decision.keep.append(record)
        decision.reasons[id(record)] = [f"tag {t}" for t in sorted(set(tags) & set(record.tags))]
    decision.keep.sort(key=lambda r: r.time, reverse=True)
    return decision
