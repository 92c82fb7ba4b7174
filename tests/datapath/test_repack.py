"""Prune with --max-unused on a local repository, as a property: after backups and forgets,
the unused bytes left in kept packs are within the limit, every remaining snapshot restores
byte for byte, and check finds no problem."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.datapath.archiver import backup
from p2pbak.datapath.check import check
from p2pbak.datapath.prune import prune
from p2pbak.datapath.repack import KeptPack, choose
from p2pbak.datapath.restorer import restore
from tests.datapath.test_retention_prune import MASTER, FolderRepository, runs, write


class SizedRepository(FolderRepository):
    async def list_packs(self) -> dict[str, int]:
        return {p: len(self._get_pack_sync(p)) for p in self.pack_ids()}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=runs, forget=st.sets(st.integers(0, 3)), limit=st.sampled_from([0.0, 0.05, 0.5]))
def test_repack_leaves_at_most_the_limit_unused_and_loses_nothing(
        runs: list[dict[str, int]], forget: set[int], limit: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo = SizedRepository.create(base / "repo", 2, 3)
        kept: list[tuple[str, dict[str, int]]] = []
        for i, files in enumerate(runs):
            write(base / "src", files)
            made = asyncio.run(backup(repo, MASTER, [base / "src"], pack_size=4096))
            if i in forget:
                asyncio.run(repo.delete_snapshot(made.snapshot_id or ""))
            else:
                kept.append((made.snapshot_id or "", files))
        asyncio.run(prune(repo, MASTER, max_unused=limit))
        after = asyncio.run(prune(repo, MASTER, dry_run=True)).plan
        in_use = after.kept_bytes - after.unused_in_kept
        assert not after.drop
        assert after.unused_in_kept <= limit * in_use + 1e-9
        report = asyncio.run(check(repo, MASTER, read_data=True))
        assert report.problems == []
        for n, (snapshot_id, files) in enumerate(kept):
            write(base / "expect", files)
            out = base / f"out{n}"
            assert asyncio.run(restore(repo, MASTER, snapshot_id, out)).errors == []
            for name in files:
                assert (out / "src" / name).read_bytes() == (base / "expect" / name).read_bytes()


def test_choose_takes_the_emptiest_packs_first() -> None:
    packs = [KeptPack("a", 100, 10, ()), KeptPack("b", 100, 90, ()), KeptPack("c", 100, 0, ())]
    assert [p.pack_id for p in choose(packs, 0.2)] == ["b"]  # 10 left of 200 in use
    assert [p.pack_id for p in choose(packs, 0.0)] == ["b", "a"]
    assert choose(packs, 1.0) == []
