"""diff, find, dump and tags on a local repository; the path mapping as a property."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from p2pbak.datapath.archiver import backup
from p2pbak.datapath.browse import diff, find
from p2pbak.datapath.dump import dump
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.paths import in_snapshot, root_names, shown
from p2pbak.datapath.retention import Policy, apply_policy
from p2pbak.datapath.selection import keep_tagged, retag, select
from p2pbak.datapath.snapshots import find_snapshot, list_snapshots, list_tree

MASTER = bytes(range(32))
NAME = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
               min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@given(st.lists(st.lists(NAME, min_size=1, max_size=3), min_size=1, max_size=3),
       st.lists(NAME, max_size=3), st.booleans())
def test_a_backed_up_path_maps_to_its_root_entry_with_or_without_slash(
        roots: list[list[str]], rest: list[str], slash: bool) -> None:
    paths = list(dict.fromkeys("/" + "/".join(r) for r in roots))
    for (name, original) in root_names(paths):
        if any(p.startswith(original + "/") for p in paths):
            continue  # a path inside another backed-up path: that one's own entry wins
        typed = original + "".join("/" + r for r in rest)
        rel = in_snapshot(paths, typed if slash else typed.lstrip("/"))
        assert rel == "/".join([name, *rest])
        assert shown(paths, rel) == typed


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "keep.txt").write_text("same\n")
    (root / "change.txt").write_text("before\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "sub" / "big.bin").write_bytes(os.urandom(300_000))
    return root


def test_diff_find_dump_and_tags(tmp_path: Path) -> None:
    repo = LocalRepository.create(tmp_path / "repo")
    src = _tree(tmp_path / "src")
    first = run(backup(repo, MASTER, [src], host="h", tags=["daily"]))
    (src / "change.txt").write_text("after, longer\n")
    (src / "gone.txt").unlink()
    (src / "new.txt").write_text("hello\n")
    second = run(backup(repo, MASTER, [src], host="h"))
    old, new = (run(find_snapshot(repo, MASTER, s.snapshot_id)) for s in (first, second))
    assert old.tags == ("daily",) and new.tags == ()
    d = run(diff(repo, MASTER, old, new))
    assert [(c.marker, c.path) for c in d.changes] == [
        ("M", f"{src}/change.txt"), ("-", f"{src}/gone.txt"), ("+", f"{src}/new.txt")]
    assert (d.added, d.removed, d.modified) == (1, 1, 1)
    hits = run(find(repo, MASTER, [old, new], ["*.txt"]))
    assert {(h.snapshot.id, h.path) for h in hits} >= {
        (old.id, f"{src}/keep.txt"), (new.id, f"{src}/keep.txt")}
    out = io.BytesIO()
    run(dump(repo, MASTER, new, in_snapshot(new.paths, f"{src}/sub/big.bin"), out))
    assert out.getvalue() == (src / "sub" / "big.bin").read_bytes()
    out = io.BytesIO()
    run(dump(repo, MASTER, new, in_snapshot(new.paths, str(src)), out))
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.extractfile("src/sub/big.bin").read() == (src / "sub/big.bin").read_bytes()
        assert sorted(tar.getnames()) == ["src", "src/change.txt", "src/keep.txt",
                                          "src/new.txt", "src/sub", "src/sub/big.bin"]
    # ls takes the absolute path as backed up
    assert [n.display_name for n in run(list_tree(repo, MASTER, new.id, f"{src}/sub"))] \
        == ["big.bin"]
    # --keep-tag keeps the tagged one when the policy alone would drop it
    records = run(list_snapshots(repo, MASTER))
    kept = keep_tagged(apply_policy(records, Policy(last=1), lambda r: r.time), ["daily"])
    assert {r.id for r in kept.keep} == {old.id, new.id} and not kept.remove
    moved = run(retag(repo, MASTER, new, ["weekly", "x"]))
    assert moved.id != new.id and moved.tags == ("weekly", "x")
    records = run(list_snapshots(repo, MASTER))
    assert new.id not in {r.id for r in records}
    assert [r.id for r in select(records, tags=["weekly,x"])] == [moved.id]
    assert select(records, tags=["weekly,daily"]) == []
    assert {r.id for r in select(records, tags=["weekly", "daily"])} == {old.id, moved.id}


def test_diff_marks_a_type_change_and_metadata_only(tmp_path: Path) -> None:
    repo = LocalRepository.create(tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_text("a file first\n")
    (src / "meta.txt").write_text("same bytes\n")
    first = run(backup(repo, MASTER, [src], host="h"))
    (src / "x").unlink()
    (src / "x").mkdir()
    (src / "x" / "inner.txt").write_text("then a folder\n")
    os.utime(src / "meta.txt", ns=(1_000_000_000, 1_000_000_000))
    second = run(backup(repo, MASTER, [src], host="h"))
    old, new = (run(find_snapshot(repo, MASTER, s.snapshot_id)) for s in (first, second))
    d = run(diff(repo, MASTER, old, new))
    assert [(c.marker, c.path) for c in d.changes] == [
        ("U", f"{src}/meta.txt"), ("T", f"{src}/x/"), ("+", f"{src}/x/inner.txt")]
    assert (d.added, d.removed, d.modified) == (1, 0, 2)
