"""The pack-oriented restorer (datapath.packrestore) through a local repository: any window,
blobs shared between files and inside one file, small packs spread over many files, empty
files, a lost pack, a damaged blob; the plan and the pack pieces as properties; and the
network repository asking the systematic fragments first."""

from __future__ import annotations

import asyncio
import os
import random
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.client.netrepo import NetworkRepository
from p2pbak.datapath.archiver import backup
from p2pbak.datapath.blobs import BlobType
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.erasure import decode_pack_parts, encode_pack
from p2pbak.datapath.index import Index, load_index
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.pack import PackEntry
from p2pbak.datapath.packrestore import Pieces, Plan, RestoreFile
from p2pbak.datapath.restorer import restore
from p2pbak.datapath.snapshots import list_tree
from p2pbak.datapath.tree import FILE, Node
from p2pbak.errors import P2pbakError
from tests.client.test_netrepo import Coordinator, Peers, _pack
from tests.datapath.test_archive import MASTER, build, describe, new_repo

# Blocks the files are made of: repeating them makes blobs shared between files and
# inside a file (the chunker cuts the same chunks out of the same bytes).
_BLOCKS = [random.Random(i).randbytes(300_000) for i in range(4)]


def _file(parts: list[int]) -> bytes:
    return b"".join(_BLOCKS[p] if p >= 0 else b"" for p in parts)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(st.integers(-1, 3), max_size=3), min_size=1, max_size=6),
       window=st.integers(1, 3), pack_size=st.sampled_from([1, 200_000, 4_000_000]))
def test_any_window_restores_byte_identical(tmp_path: Path, files: list[list[int]],
                                            window: int, pack_size: int) -> None:
    base = Path(os.path.join(tmp_path, os.urandom(4).hex()))
    src = base / "src"
    build(src, {f"f{i}": (_file(p), 0o640) for i, p in enumerate(files)} |
          {"same": (_file(files[0]), 0o444), "d": {"e": (b"", 0o600)}}, [])
    repo = new_repo(base / "repo")
    done = asyncio.run(backup(repo, MASTER, [src], pack_size=pack_size))
    out = base / "out"
    result = asyncio.run(restore(repo, MASTER, done.snapshot_id, out, window=window))
    assert result.errors == [] and result.files_restored == len(files) + 2
    assert describe(out / "src") == describe(src)
    assert result.bytes_restored == sum(len(_file(p)) for p in [*files, files[0]])


def _one_pack_per_blob(tmp_path: Path) -> tuple[LocalRepository, Path]:
    src = tmp_path / "src"
    build(src, {"a": (os.urandom(5000), 0o644), "b": (os.urandom(5000), 0o644),
                "c": (os.urandom(5000), 0o644)}, [])
    repo = new_repo(tmp_path / "repo")
    asyncio.run(backup(repo, MASTER, [src], pack_size=1))
    return repo, src


def _pack_of(repo: LocalRepository, name: str) -> str:
    index = asyncio.run(load_index(repo, Keys.derive(MASTER)))
    node = asyncio.run(list_tree(repo, MASTER, "latest", f"src/{name}"))[0]
    loc = index.get(node.content[0])
    assert loc is not None
    return loc.pack_id


def test_a_damaged_blob_fails_only_its_file_and_leaves_no_temp(tmp_path: Path) -> None:
    """A pack that decodes but whose blob does not open (wrong key material in the blob):
    only the file needing it fails; with window=1 the others are still written."""
    repo, src = _one_pack_per_blob(tmp_path)
    bad = _pack_of(repo, "b")

    class Damaged(LocalRepository):
        async def get_pack(self, pack_id: str) -> bytes:
            data = await super().get_pack(pack_id)
            if pack_id == bad:
                return bytes([data[0] ^ 1]) + data[1:]
            return data

    out = tmp_path / "out"
    result = asyncio.run(restore(Damaged(tmp_path / "repo"), MASTER, "latest", out, window=1))
    assert len(result.errors) == 1 and result.errors[0].startswith(str(out / "src" / "b"))
    assert sorted(p.name for p in (out / "src").iterdir()) == ["a", "c"]
    assert (out / "src" / "c").read_bytes() == (src / "c").read_bytes()


def test_an_interrupted_restore_leaves_no_temporary_file(tmp_path: Path) -> None:
    repo, _ = _one_pack_per_blob(tmp_path)
    stop = _pack_of(repo, "c")

    class Interrupted(LocalRepository):
        async def get_pack(self, pack_id: str) -> bytes:
            if pack_id == stop:
                raise KeyboardInterrupt
            return await super().get_pack(pack_id)

    out = tmp_path / "out"
    try:
        asyncio.run(restore(Interrupted(tmp_path / "repo"), MASTER, "latest", out, window=1))
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interruption was swallowed")
    assert [p.name for p in (out / "src").iterdir()] == []


def test_systematic_fragments_are_asked_first_and_alone() -> None:
    """A healthy fetch asks exactly k holders, those of fragments 0..k-1, whatever the
    coordinator's order; a down one brings in the next."""
    coord, peers = Coordinator(k=3, n=8, success=8), Peers()
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack(30_000)
    asyncio.run(repo.put_pack(pid, data))
    coord.committed[pid]["fragments"].reverse()  # the coordinator lists p7 .. p0
    asked: list[str] = []
    real_get = peers.get_fragment

    async def spy(url: str, fid: str, ticket: str) -> bytes:
        asked.append(url)
        return await real_get(url, fid, ticket)

    peers.get_fragment = spy  # type: ignore[method-assign]
    assert asyncio.run(repo.get_pack(pid)) == data
    assert sorted(asked) == ["http://p0", "http://p1", "http://p2"]
    asked.clear()
    peers.down = {"http://p1"}
    assert asyncio.run(repo.get_pack(pid)) == data
    assert asked[:3] == ["http://p2", "http://p1", "http://p0"] and asked[3] == "http://p7"


def test_a_stale_temporary_file_is_cut_to_size(tmp_path: Path) -> None:
    """A temp file of the same name left by a crashed run, longer than the file: the restore
    still writes exactly the file (the temp is cut to size when first opened)."""
    src = tmp_path / "src"
    build(src, {"f": (os.urandom(3000), 0o644)}, [])
    repo = new_repo(tmp_path / "repo")
    asyncio.run(backup(repo, MASTER, [src]))
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    (out / "src" / f".f.p2pbak-{os.getpid()}.tmp").write_bytes(b"\xff" * 10_000)
    asyncio.run(restore(repo, MASTER, "latest", out))
    assert (out / "src" / "f").read_bytes() == (src / "f").read_bytes()
    assert sorted(p.name for p in (out / "src").iterdir()) == ["f"]


def test_a_hung_systematic_holder_is_hedged_once_the_others_answered() -> None:
    """k=2: p0 hangs, p1 answers at once; after the hedge delay the extra holders are
    asked, the pack comes back and the hung fetch is cancelled."""
    coord, peers = Coordinator(k=2, n=6, success=6), Peers()
    repo = NetworkRepository(coord, peers, extra_fetch=2, hedge=0.05)  # type: ignore[arg-type]
    pid, data = _pack(20_000)
    asyncio.run(repo.put_pack(pid, data))
    peers.hang = {"http://p0"}
    assert asyncio.run(repo.get_pack(pid)) == data
    assert peers.cancelled == 1


_IDS = [f"{i:064x}" for i in range(6)]


@settings(max_examples=60, deadline=None)
@given(files=st.lists(st.lists(st.sampled_from(_IDS), max_size=6), min_size=1, max_size=6),
       packs=st.lists(st.integers(0, 2), min_size=len(_IDS), max_size=len(_IDS)),
       sizes=st.lists(st.integers(1, 50), min_size=len(_IDS), max_size=len(_IDS)))
def test_the_plan_writes_every_blob_to_every_offset_that_needs_it(
        files: list[list[str]], packs: list[int], sizes: list[int]) -> None:
    """Blobs spread over three packs, repeated within and across files: replaying the
    plan pack by pack (each blob once, to all its targets) rebuilds every file, each blob
    is planned once per pack, and each file waits for exactly its content's writes."""
    index = Index()
    raw = {b: bytes([i + 1]) * sizes[i] for i, b in enumerate(_IDS)}
    for p in range(3):
        mine = [(i, b) for i, b in enumerate(_IDS) if packs[i] == p]
        index.add_pack(f"pack{p}", [PackEntry(BlobType.DATA, b, 100 * i, 10, sizes[i])
                                    for i, b in mine])
    plan = Plan()
    for n, content in enumerate(files):
        node = Node(f"f{n}".encode(), FILE, 0o644, 0, content=tuple(content))
        plan.add(index, RestoreFile(f"/out/f{n}", node))
    out = {f.dest: bytearray(f.size) for f in plan.files}
    writes = dict.fromkeys(out, 0)
    for pack_id, blobs in plan.packs.items():
        for blob in blobs.values():
            loc = index.get(blob.blob_id)
            assert loc is not None and loc.pack_id == pack_id and blob.offset == loc.offset
            for file, offset in blob.targets:
                out[file.dest][offset:offset + sizes[_IDS.index(blob.blob_id)]] = \
                    raw[blob.blob_id]
                writes[file.dest] += 1
    for file, content in zip(plan.files, files, strict=True):
        assert bytes(out[file.dest]) == b"".join(raw[b] for b in content)
        assert file.pending == writes[file.dest] == len(content) and not file.error
    assert list(plan.packs) == list(dict.fromkeys(
        f"pack{packs[_IDS.index(b)]}" for content in files for b in content))


def test_a_blob_missing_from_the_index_fails_only_its_file() -> None:
    index = Index()
    index.add_pack("p", [PackEntry(BlobType.DATA, _IDS[0], 0, 10, 5)])
    plan = Plan()
    good = RestoreFile("/out/a", Node(b"a", FILE, 0o644, 0, content=(_IDS[0],)))
    bad = RestoreFile("/out/b", Node(b"b", FILE, 0o644, 0, content=(_IDS[0], _IDS[1])))
    plan.add(index, good)
    plan.add(index, bad)
    assert not good.error and "missing from the repository index" in bad.error
    # b's planned write of the blob it has is skipped by the writer (its error is set)
    assert [f for f, _ in plan.packs["p"][_IDS[0]].targets if not f.error] == [good]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=200), cuts=st.lists(st.integers(0, 200)),
       where=st.tuples(st.integers(0, 220), st.integers(0, 220)))
def test_pieces_slice_as_the_joined_pack(data: bytes, cuts: list[int],
                                         where: tuple[int, int]) -> None:
    """A pack held in pieces (empty ones included) answers every slice as the joined
    bytes would, and one inside a piece is a view of it, not a copy."""
    bounds = sorted([0, len(data), *(c for c in cuts if c <= len(data))])  # repeats: empty
    view = memoryview(data)
    parts = [view[a:b] for a, b in pairwise(bounds)]
    pieces = Pieces(parts)
    offset, length = where
    got = pieces.slice(offset, length)
    assert bytes(got) == data[offset:offset + length]
    if isinstance(got, memoryview) and length:
        assert got.obj is data


def test_systematic_fragments_decode_to_views_of_themselves() -> None:
    """k systematic fragments: the pack's parts are views of the fragments (no copy);
    any other k decode to the same bytes; damage is still refused."""
    pid, data = _pack(70_000)
    frags = encode_pack(pid, data, 3, 6)
    parts = decode_pack_parts(pid, frags[:3])
    assert b"".join(parts) == data and all(p.obj in frags for p in parts)
    assert b"".join(decode_pack_parts(pid, frags[2:5])) == data
    forged = bytearray(frags[0])
    forged[-1] ^= 1
    with pytest.raises(P2pbakError):
        decode_pack_parts(pid, [bytes(forged), *frags[1:3]])
