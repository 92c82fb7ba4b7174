"""The overlapped backup (files read and sealed by a pool, in batches, a bounded number
ahead): any batch size and bound gives the same snapshot tree as a serial run, a content
repeated across batches is sealed once, and a failing upload stops the walk."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.datapath import archiver
from p2pbak.datapath.archiver import backup
from p2pbak.datapath.localrepo import LocalRepository
from p2pbak.datapath.restorer import restore
from p2pbak.datapath.snapshots import find_snapshot
from p2pbak.errors import P2pbakError
from tests.datapath.test_archive import MASTER, build, describe, new_repo

_CONTENTS = [b"", b"x", *(random.Random(i).randbytes(700 + 997 * i) for i in range(5))]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(_CONTENTS) - 1), min_size=1, max_size=30),
       per_job=st.integers(1, 5), ahead=st.integers(1, 3), pack_size=st.sampled_from(
           [1, 3000, 1 << 20]))
def test_any_batching_gives_the_serial_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            picks: list[int], per_job: int, ahead: int,
                                            pack_size: int) -> None:
    """Files (repeats among them) in two folders: the snapshot's tree id is the one a
    one-file-per-batch, one-batch-ahead run gives, each distinct content is sealed once,
    and the restore is identical."""
    base = Path(os.path.join(tmp_path, os.urandom(4).hex()))
    half = len(picks) // 2
    spec = {"a": {f"f{i}": (_CONTENTS[p], 0o644) for i, p in enumerate(picks[:half])},
            "b": {f"g{i}": (_CONTENTS[p], 0o600) for i, p in enumerate(picks[half:])}}
    build(base / "src", spec, [])

    def run(files_per_job: int, jobs_ahead: int, name: str) -> tuple[str, int, LocalRepository]:
        monkeypatch.setattr(archiver, "FILES_PER_JOB", files_per_job)
        monkeypatch.setattr(archiver, "JOBS_AHEAD", jobs_ahead)
        repo = new_repo(base / name)
        done = asyncio.run(backup(repo, MASTER, [base / "src"], pack_size=pack_size))
        record = asyncio.run(find_snapshot(repo, MASTER, done.snapshot_id or ""))
        assert done.summary.files_new == len(picks)
        return record.tree, done.summary.blobs_added, repo

    serial_tree, serial_blobs, _ = run(1, 1, "serial")
    tree, blobs, repo = run(per_job, ahead, "pooled")
    assert tree == serial_tree
    distinct = {_CONTENTS[p] for p in picks} - {b""}
    assert blobs == serial_blobs == len(distinct) + 4  # + the trees of root, src, a, b
    asyncio.run(restore(repo, MASTER, "latest", base / "out"))
    assert describe(base / "out" / "src") == describe(base / "src")


def test_a_failing_upload_stops_the_pool(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The second pack's upload fails while the workers still have files to read: the
    backup fails with that error, no snapshot is saved and no worker thread is left."""
    monkeypatch.setattr(archiver, "FILES_PER_JOB", 1)
    build(tmp_path / "src", {f"f{i:03d}": (os.urandom(2000), 0o644) for i in range(200)}, [])

    class Failing(LocalRepository):
        puts = 0

        async def put_pack(self, pack_id: str, data: bytes) -> None:
            Failing.puts += 1
            if Failing.puts == 2:
                raise P2pbakError("suppliers gone")
            await super().put_pack(pack_id, data)

    new_repo(tmp_path / "repo")
    repo = Failing(tmp_path / "repo")
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(P2pbakError, match="suppliers gone"):
        asyncio.run(backup(repo, MASTER, [tmp_path / "src"], pack_size=4000))
    assert asyncio.run(repo.list_snapshots()) == []
    left = {t.name for t in threading.enumerate()} - before
    assert not [n for n in left if n.startswith("backup-file")]
    assert Failing.puts < 100  # the walk stopped: not every file was sealed and put
