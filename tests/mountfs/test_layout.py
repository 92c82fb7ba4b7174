"""The mount's virtual folders: restic's layout, unique time names, the backed-up paths."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from p2pbak.commands.sim_deps import require_fuse
from p2pbak.datapath.snapshots import SnapshotRecord
from p2pbak.errors import P2pbakError
from p2pbak.mountfs.layout import Link, SnapDir, layout, path_folders

T0 = datetime(2026, 12, 4, 18, 0, 0, tzinfo=UTC)


def _rec(i: int, host: str, seconds: float, tags: tuple[str, ...] = ()) -> SnapshotRecord:
    return SnapshotRecord(id=f"{i:02d}" * 32, time=T0 + timedelta(seconds=seconds), host=host,
                          paths=("/home/a/doc",), tree="t", tags=tags)


def test_layout_by_time_host_tag_and_id_with_latest_links() -> None:
    a, b, c = _rec(1, "nas", 0, ("x",)), _rec(2, "laptop", 0.5), _rec(3, "nas", 60, ("x",))
    top = layout([a, b, c])
    snaps = top[b"snapshots"]
    # two in the same second: restic's -1 suffix, oldest first
    assert snaps[b"2026-12-04T18:00:00Z"] == SnapDir(a)
    assert snaps[b"2026-12-04T18:00:00Z-1"] == SnapDir(b)
    assert snaps[b"latest"] == Link(b"2026-12-04T18:01:00Z")
    assert set(top[b"hosts"]) == {b"nas", b"laptop"}
    assert top[b"hosts"][b"laptop"][b"latest"] == Link(b"2026-12-04T18:00:00Z")
    assert top[b"tags"][b"x"][b"latest"] == Link(b"2026-12-04T18:01:00Z")
    assert top[b"ids"] == {b"01010101": SnapDir(a), b"02020202": SnapDir(b),
                           b"03030303": SnapDir(c)}
    assert layout([])[b"snapshots"] == {}


def test_backed_up_paths_appear_whole() -> None:
    # two folders of one base name get the archiver's unique root names
    got = path_folders(["/home/a/doc", "/srv/doc", "/home/a/doc/inner", "/etc"])
    assert got == {b"home": {b"a": {b"doc": "doc"}}, b"srv": {b"doc": "doc-1"}, b"etc": "etc"}
    assert path_folders(["/"]) == "root"


def test_mount_without_pyfuse3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyfuse3", None)  # import then raises ImportError
    with pytest.raises(P2pbakError, match=r"pip install 'p2pbak\[mount\]'") as err:
        require_fuse()
    assert "\n" not in str(err.value) and err.value.exit_code == 1
