"""Backup and restore through a local repository: round trips, dedup, parents, errors."""

from __future__ import annotations

import asyncio
import builtins
import os
import random
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.datapath.archiver import BackupProgress, backup
from p2pbak.datapath.chunker import MAX_SIZE, MIN_SIZE
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.restorer import RestoreProgress, restore
from p2pbak.datapath.snapshots import find_snapshot, list_snapshots, list_tree
from p2pbak.errors import P2pbakError

MASTER = bytes(range(32))


def describe(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under root (root included): type, mode, mtime and content."""
    out: dict[str, tuple[Any, ...]] = {}

    def visit(path: Path, rel: str) -> None:
        st = path.lstat()
        mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path), mtime)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, mtime)
            for child in sorted(os.listdir(path)):
                visit(path / child, f"{rel}/{child}")
        else:
            out[rel] = ("file", mode, mtime, path.read_bytes())

    visit(root, root.name)
    return out


def build(root: Path, spec: dict[str, Any], mtimes: list[int]) -> None:
    """Make a tree from a spec: bytes = file, ("link", target) = symlink, dict = dir."""
    root.mkdir(parents=True, exist_ok=True)
    for name, item in spec.items():
        path = root / name
        if isinstance(item, dict):
            build(path, item, mtimes)
        elif isinstance(item, tuple) and item[0] == "link":
            os.symlink(item[1], path)
        else:
            data, mode = item
            path.write_bytes(data)
            os.chmod(path, mode)
        stamp = mtimes[len(name) % len(mtimes)] if mtimes else 1_600_000_000_000_000_000
        os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
    os.utime(root, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))


def new_repo(path: Path, k: int = 2, n: int = 3) -> LocalRepository:
    return LocalRepository.create(path, k, n)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                min_size=1, max_size=10).filter(lambda s: s not in (".", "..")
                                                and len(s.encode()) < 200)
boundary = st.builds(lambda seed, size: random.Random(seed).randbytes(size),
                     st.integers(0, 2**32), st.sampled_from([MIN_SIZE, MIN_SIZE + 1]))
files = st.tuples(st.sampled_from([b"", b"x"]) | st.binary(max_size=3000) | boundary,
                  st.sampled_from([0o644, 0o600, 0o755, 0o444]))
links = st.tuples(st.just("link"), names)
trees = st.recursive(
    st.dictionaries(names, files | links, max_size=4),
    lambda inner: st.dictionaries(names, files | links | inner, max_size=4),
    max_leaves=12)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=trees, mtimes=st.lists(st.integers(0, 2**62), min_size=1, max_size=4),
       pack_size=st.sampled_from([1, 4096, 1 << 24]))
def test_random_trees_round_trip(spec: dict[str, Any], mtimes: list[int],
                                 pack_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        build(src, spec, mtimes)
        repo = new_repo(base / "repo")
        result = run(backup(repo, MASTER, [src], pack_size=pack_size))
        assert result.errors == [] and result.snapshot_id
        restored = run(restore(repo, MASTER, result.snapshot_id, base / "out"))
        assert restored.errors == []
        assert describe(base / "out" / "src") == describe(src)
        again = run(backup(repo, MASTER, [src], parent=""))  # full re-read: all known
        assert (again.summary.blobs_added, again.summary.packs_added) == (0, 0)


def test_boundary_sizes_and_empty_dirs(tmp_path: Path) -> None:
    sizes = [0, 1, MIN_SIZE - 1, MIN_SIZE, MIN_SIZE + 1, MAX_SIZE, MAX_SIZE + 1]
    spec: dict[str, Any] = {f"f{s}": (os.urandom(s), 0o640) for s in sizes}
    spec["nested"] = {"empty": {"deeper": {}}, "ünïcødé ✓": (b"\xff" * 100, 0o600)}
    spec["link"] = ("link", "nested/ünïcødé ✓")
    spec["dangling"] = ("link", "does/not/exist")
    build(tmp_path / "src", spec, [1_234_567_890_123_456_789])
    repo = new_repo(tmp_path / "repo", 3, 5)
    result = run(backup(repo, MASTER, [tmp_path / "src"], pack_size=4 * 1024 * 1024))
    assert result.summary.files_new == len(sizes) + 1
    assert result.summary.packs_added >= 3
    run(restore(repo, MASTER, "latest", tmp_path / "out"))
    assert describe(tmp_path / "out" / "src") == describe(tmp_path / "src")


def test_same_tree_twice_adds_nothing_and_opens_no_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    build(src, {"a": (os.urandom(2000), 0o644), "d": {"b": (b"hello", 0o600), "e": {}}}, [])
    repo = new_repo(tmp_path / "repo")
    first = run(backup(repo, MASTER, [src]))
    opened: list[str] = []

    def counting(real: Any) -> Any:
        def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if str(file).startswith(str(src)):
                opened.append(str(file))
            return real(file, *args, **kwargs)
        return counting_open

    def count_opens() -> None:  # small files are read with os.open, big ones with open
        monkeypatch.setattr(builtins, "open", counting(builtins.open))
        monkeypatch.setattr(os, "open", counting(os.open))

    count_opens()
    second = run(backup(repo, MASTER, [src]))
    monkeypatch.undo()
    assert opened == []
    assert second.parent == first.snapshot_id
    s = second.summary
    assert (s.files_unmodified, s.files_new, s.files_changed) == (2, 0, 0)
    assert (s.blobs_added, s.packs_added, s.bytes_read) == (0, 0, 0)
    assert s.dirs_unmodified == 3 and s.total_bytes == 2005
    # A touched file is read again, and only it.
    (src / "a").write_bytes(os.urandom(2000))
    count_opens()
    third = run(backup(repo, MASTER, [src]))
    monkeypatch.undo()
    assert opened == [str(src / "a")]
    assert (third.summary.files_changed, third.summary.files_unmodified) == (1, 1)
    assert third.summary.dirs_changed == 1  # src itself; d is unmodified
    assert len(run(list_snapshots(repo, MASTER))) == 3
    # A new mode alone: not read again, but its folders' trees change.
    (src / "d" / "b").chmod(0o640)
    fourth = run(backup(repo, MASTER, [src]))
    assert (fourth.summary.files_unmodified, fourth.summary.bytes_read) == (2, 0)
    assert (fourth.summary.dirs_changed, fourth.summary.dirs_unmodified) == (2, 1)
    node = run(list_tree(repo, MASTER, fourth.snapshot_id, "src/d/b"))[0]
    assert node.mode == 0o640


@pytest.mark.slow
def test_50_mib_file_and_one_byte_edit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    data = bytearray(os.urandom(50 * 1024 * 1024))
    big.write_bytes(data)
    repo = new_repo(tmp_path / "repo")
    first = run(backup(repo, MASTER, [src]))
    data[len(data) // 2] ^= 0x01
    big.write_bytes(data)
    second = run(backup(repo, MASTER, [src]))
    old = run(list_tree(repo, MASTER, first.snapshot_id, "src/big.bin"))[0].content
    new = run(list_tree(repo, MASTER, second.snapshot_id, "src/big.bin"))[0].content
    assert 0 < len(set(new) - set(old)) <= 3
    assert second.summary.blobs_added <= 3 + 2  # the new chunks and two trees
    run(restore(repo, MASTER, second.snapshot_id, tmp_path / "out"))
    assert describe(tmp_path / "out" / "src") == describe(src)


def test_excludes_unreadable_and_special_files(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    build(src, {"keep.txt": (b"k", 0o644), "skip.tmp": (b"s", 0o644),
                "cache": {"x": (b"x", 0o644)}, "sub": {"cache": {"y": (b"y", 0o644)},
                                                      "bad": (b"secret", 0o644)}}, [])
    os.mkfifo(src / "fifo")
    def failing(real: Any) -> Any:
        def failing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if str(file) == str(src / "sub" / "bad"):
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, *args, **kwargs)
        return failing_open

    monkeypatch.setattr(builtins, "open", failing(builtins.open))
    monkeypatch.setattr(os, "open", failing(os.open))  # small files: os.open
    repo = new_repo(tmp_path / "repo")
    result = run(backup(repo, MASTER, [src], excludes=["*.tmp", "sub/cache"]))
    monkeypatch.undo()
    assert result.snapshot_id is not None
    assert [str(e) for e in result.errors] == [f"{src / 'sub' / 'bad'}: Permission denied"]
    assert result.warnings == [f"{src / 'fifo'}: special file skipped"]
    run(restore(repo, MASTER, "latest", tmp_path / "out"))
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert got == ["src", "src/cache", "src/cache/x", "src/keep.txt", "src/sub"]


def test_restore_refuses_overwrite_and_includes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, {"a.txt": (b"new", 0o644), "d": {"b.txt": (b"bee", 0o644)}}, [])
    repo = new_repo(tmp_path / "repo")
    run(backup(repo, MASTER, [src]))
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    (out / "src" / "a.txt").write_bytes(b"mine")
    with pytest.raises(P2pbakError, match="already exists"):
        run(restore(repo, MASTER, "latest", out))
    assert (out / "src" / "a.txt").read_bytes() == b"mine"
    assert not (out / "src" / "d").exists()  # refused before writing anything
    run(restore(repo, MASTER, "latest", out, overwrite=True))
    assert (out / "src" / "a.txt").read_bytes() == b"new"
    only = tmp_path / "only"
    result = run(restore(repo, MASTER, "latest", only, include=[str(src / "d")]))
    assert result.files_restored == 1
    assert sorted(p.name for p in only.rglob("*")) == ["b.txt", "d", "src"]
    with pytest.raises(P2pbakError, match="nothing in the snapshot"):
        run(restore(repo, MASTER, "latest", tmp_path / "none", include=["nope*"]))


def test_damaged_fragment_still_restores(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, {"f": (os.urandom(100_000), 0o644)}, [])
    repo = new_repo(tmp_path / "repo", 2, 4)
    run(backup(repo, MASTER, [src]))
    for pack_id in repo.pack_ids():
        paths = repo.fragment_paths(pack_id)
        raw = bytearray(paths[0].read_bytes())
        raw[-1] ^= 0xFF
        paths[0].write_bytes(raw)
        paths[1].unlink()
    run(restore(repo, MASTER, "latest", tmp_path / "out"))
    assert describe(tmp_path / "out" / "src") == describe(src)
    for pack_id in repo.pack_ids():
        repo.fragment_paths(pack_id)[1].unlink()  # now only one of two is left
    with pytest.raises(P2pbakError, match="fragments"):
        run(restore(repo, MASTER, "latest", tmp_path / "out2"))


def test_dry_run_progress_and_snapshot_lookup(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, {"a": (os.urandom(3000), 0o644), "b": (os.urandom(5000), 0o644)}, [])
    repo = new_repo(tmp_path / "repo")
    seen: list[tuple[int, int]] = []

    def on_progress(p: BackupProgress) -> None:
        seen.append((p.files_done, p.bytes_done))

    dry = run(backup(repo, MASTER, [src], dry_run=True, progress=on_progress))
    assert dry.snapshot_id is None and dry.summary.files_new == 2
    assert repo.pack_ids() == [] and run(list_snapshots(repo, MASTER)) == []
    assert seen[-1] == (2, 8000)
    unseen: list[int] = []  # no one shows the totals: the tree is not walked twice
    run(backup(repo, MASTER, [src], dry_run=True, totals=False,
               progress=lambda p: unseen.append(p.files_total)))
    assert unseen and set(unseen) == {None}
    done = run(backup(repo, MASTER, [src], host="h1"))
    record = run(find_snapshot(repo, MASTER, done.snapshot_id[:6]))
    assert record.host == "h1" and record.summary["files_new"] == 2
    with pytest.raises(P2pbakError, match="no snapshot"):
        run(find_snapshot(repo, MASTER, "ffffffffff"))
    last: list[RestoreProgress] = []
    run(restore(repo, MASTER, "latest", tmp_path / "out", progress=last.append))
    assert (last[-1].files_done, last[-1].bytes_done) == (2, 8000)
    assert (last[-1].files_total, last[-1].bytes_total) == (2, 8000)
    with pytest.raises(P2pbakError, match="cannot back up"):
        run(backup(repo, MASTER, [tmp_path / "missing"]))
    with pytest.raises(P2pbakError):
        run(restore(repo, bytes(32), "latest", tmp_path / "x"))  # another key


def test_failed_upload_saves_no_snapshot(tmp_path: Path) -> None:
    class Unreachable(LocalRepository):
        async def put_pack(self, pack_id: str, data: bytes) -> None:
            raise P2pbakError("suppliers unreachable")

    src = tmp_path / "src"
    build(src, {f"f{i}": (os.urandom(5000), 0o644) for i in range(20)}, [])
    new_repo(tmp_path / "repo")
    repo = Unreachable(tmp_path / "repo")
    with pytest.raises(P2pbakError, match="unreachable"):
        run(backup(repo, MASTER, [src], pack_size=4096))
    assert run(list_snapshots(repo, MASTER)) == [] and run(repo.list_indexes()) == []


def test_lost_data_pack_is_reported_per_file(tmp_path: Path) -> None:
    from p2pbak.datapath.crypto import Keys
    from p2pbak.datapath.index import load_index

    src = tmp_path / "src"
    build(src, {"a": (os.urandom(5000), 0o644), "b": (os.urandom(5000), 0o644)}, [])
    repo = new_repo(tmp_path / "repo")
    run(backup(repo, MASTER, [src], pack_size=1))  # one pack per blob
    index = run(load_index(repo, Keys.derive(MASTER)))
    node = run(list_tree(repo, MASTER, "latest", "src/a"))[0]
    lost = index.get(node.content[0])
    assert lost is not None
    for path in repo.fragment_paths(lost.pack_id):
        path.unlink()
    result = run(restore(repo, MASTER, "latest", tmp_path / "out"))
    assert len(result.errors) == 1
    assert str(result.errors[0]).startswith(str(tmp_path / "out/src/a"))
    assert (tmp_path / "out" / "src" / "b").read_bytes() == (src / "b").read_bytes()
    assert not (tmp_path / "out" / "src" / "a").exists()
    assert [p.name for p in (tmp_path / "out" / "src").iterdir()] == ["b"]  # no temp left
