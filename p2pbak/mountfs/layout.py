"""What a mount shows above the snapshots' own trees, restic's layout:

    snapshots/<time>/...          every snapshot, by time (UTC), and a `latest` link
    hosts/<host>/<time>/...       the same per host, each with its `latest`
    tags/<tag>/<time>/...         per tag
    ids/<short id>/...            by id

Inside a snapshot the backed-up paths appear whole (home/u/doc/...), as restic shows them,
so a path the user backed up is the same path below the snapshot's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from p2pbak.datapath.paths import root_names
from p2pbak.datapath.snapshots import SnapshotRecord

LATEST = b"latest"


@dataclass(frozen=True)
class Link:
    target: bytes


@dataclass(frozen=True)
class SnapDir:
    record: SnapshotRecord


# A virtual folder: names to folders, links, snapshots, or (inside a snapshot) the name of
# an entry of the snapshot's root tree.
Folder = dict[bytes, "Folder | Link | SnapDir | str"]


def time_name(time: datetime) -> str:
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def by_time(records: Sequence[SnapshotRecord]) -> Folder:
    """The records (oldest first) by time, made unique as restic does (-1, -2), and
    `latest` linking to the newest."""
    out: Folder = {}
    name = b""
    for record in records:
        base = name = _encode(time_name(record.time))
        n = 0
        while name in out or name == LATEST:
            n += 1
            name = base + b"-%d" % n
        out[name] = SnapDir(record)
    if records:
        out[LATEST] = Link(name)
    return out


def layout(records: Sequence[SnapshotRecord]) -> Folder:
    """The mount's top folders for these snapshots (oldest first)."""
    hosts: dict[str, list[SnapshotRecord]] = {}
    tags: dict[str, list[SnapshotRecord]] = {}
    for r in records:
        hosts.setdefault(r.host, []).append(r)
        for tag in r.tags:
            tags.setdefault(tag, []).append(r)
    return {b"snapshots": by_time(records),
            b"hosts": {_encode(h): by_time(rs) for h, rs in sorted(hosts.items())},
            b"tags": {_encode(t): by_time(rs) for t, rs in sorted(tags.items())},
            b"ids": {_encode(r.short_id): SnapDir(r) for r in records}}


def path_folders(paths: Sequence[str]) -> Folder | str:
    """A snapshot's folder: its backed-up paths as nested folders whose last parts are the
    root tree's entries (their names there); only that name when `/` itself was backed up.
    A path inside another backed-up path is already in that one's tree."""
    top: Folder = {}
    names = sorted(root_names(paths), key=lambda item: item[1].strip("/").count("/"))
    for name, original in names:
        parts = [_encode(p) for p in original.strip("/").split("/") if p]
        if not parts:
            return name
        here: Folder | str = top
        for part in parts[:-1]:
            if not isinstance(here, dict):
                break
            here = here.setdefault(part, {})  # type: ignore[assignment]
        if isinstance(here, dict):
            here[parts[-1]] = name
    return top
