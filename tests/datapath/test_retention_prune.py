"""Prune and check on a local repository, as properties: whatever is backed up and
forgotten, prune keeps exactly the packs the remaining snapshots use, every remaining
snapshot restores byte for byte, and check finds no problem.

The local repository is extended with the three calls prune needs from the coordinator
(list, place, drop packs), each answered from its own folder.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.datapath.archiver import backup
from p2pbak.datapath.check import check, load, load_and_walk
from p2pbak.datapath.crypto import Keys
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.prune import prune
from p2pbak.datapath.restorer import restore
from p2pbak.errors import P2pbakError

MASTER = bytes(range(32))


class FolderRepository(LocalRepository):
    """A local repository that also answers what prune and check ask the coordinator."""

    async def list_packs(self) -> dict[str, int]:
        return {p: -1 for p in self.pack_ids()}

    async def pack_placements(self, pack_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        held = set(self.pack_ids())
        return {p: {"k": self.k, "n": self.n, "placed": len(self.fragment_paths(p)),
                    "online": len(self.fragment_paths(p))} for p in pack_ids if p in held}

    async def drop_packs(self, pack_ids: Sequence[str]) -> dict[str, int]:
        for p in pack_ids:
            shutil.rmtree(self._pack_dir(p))
        return {"packs": len(pack_ids), "fragments": len(pack_ids) * self.n, "bytes": 0,
                "fragment_bytes": 0}


def write(src: Path, files: dict[str, int]) -> None:
    """Files named by a content seed: equal seeds, equal bytes (so runs share chunks)."""
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name, seed in files.items():
        (src / name).write_bytes(random.Random(seed).randbytes(2000 + seed * 97))


async def used_packs(repo: FolderRepository) -> set[str]:
    loaded, walked = await load_and_walk(repo, Keys.derive(MASTER))
    return loaded.packs_of(walked.used)


runs = st.lists(st.dictionaries(st.sampled_from("abcde"), st.integers(0, 6), min_size=1),
                min_size=1, max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=runs, forget=st.sets(st.integers(0, 3)))
def test_prune_keeps_exactly_what_the_remaining_snapshots_use(
        runs: list[dict[str, int]], forget: set[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo = FolderRepository.create(base / "repo", 2, 3)
        kept: list[tuple[str, dict[str, int]]] = []
        for i, files in enumerate(runs):
            write(base / "src", files)
            made = asyncio.run(backup(repo, MASTER, [base / "src"], pack_size=4096))
            if i in forget:
                asyncio.run(repo.delete_snapshot(made.snapshot_id or ""))
            else:
                kept.append((made.snapshot_id or "", files))
        result = asyncio.run(prune(repo, MASTER))
        assert set(repo.pack_ids()) == asyncio.run(used_packs(repo))
        assert result.plan.keep == len(repo.pack_ids())
        again = asyncio.run(prune(repo, MASTER))
        assert not again.plan.drop and not again.plan.rewrite
        report = asyncio.run(check(repo, MASTER, read_data=True))
        assert report.problems == [] and report.packs == len(repo.pack_ids())
        for n, (snapshot_id, files) in enumerate(kept):
            write(base / "expect", files)
            out = base / f"out{n}"
            assert asyncio.run(restore(repo, MASTER, snapshot_id, out)).errors == []
            for name in files:
                assert (out / "src" / name).read_bytes() == (base / "expect" / name).read_bytes()


def test_check_finds_a_damaged_pack_and_prune_refuses_to_run_on_a_broken_tree(
        tmp_path: Path) -> None:
    repo = FolderRepository.create(tmp_path / "repo", 2, 3)
    write(tmp_path / "src", {"a": 1, "b": 2})
    asyncio.run(backup(repo, MASTER, [tmp_path / "src"], pack_size=4096))
    keys = Keys.derive(MASTER)
    loaded = asyncio.run(load(repo, keys))
    snap = loaded.snapshots[0]
    tree_pack = loaded.index.get(snap.tree)
    assert tree_pack is not None
    shutil.rmtree(repo._pack_dir(tree_pack.pack_id))  # the root tree's pack is lost
    report = asyncio.run(check(repo, MASTER))
    assert any("cannot be read" in p for p in report.problems)
    assert any("not stored" in p for p in report.problems)
    with pytest.raises(P2pbakError, match="prune stopped, nothing deleted"):
        asyncio.run(prune(repo, MASTER))
    assert len(repo.pack_ids()) == len(loaded.index.packs()) - 1
