"""`prune --max-unused`: forget most of a snapshot's files, and the bytes the suppliers hold
fall to within the limit of what the remaining snapshot needs (measured on their disks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.e2e.test_garbage import disk_bytes, settle
from tests.support.grid import GridSpec, random_files, summary

pytestmark = pytest.mark.slow
GRID = GridSpec(4, heartbeat=0.5)


def test_repack_frees_all_but_the_limit(grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 24, 128, seed=11)  # 3 MiB: one data pack
    first = summary(grid.cli("backup", str(src), "--json", config=alice))
    for f in sorted(src.iterdir())[2:]:
        f.unlink()
    summary(grid.cli("backup", str(src), "--json", config=alice))
    summary(grid.cli("forget", first["snapshot_id"], "--json", config=alice))
    plain = summary(grid.cli("prune", "--json", config=alice))
    assert plain["packs_to_repack"] == 0  # without --max-unused a used pack stays whole
    assert plain["unused_bytes_kept"] > 0.8 * first["data_added"]
    settle(grid)
    before = disk_bytes(grid)
    dry = summary(grid.cli("prune", "--max-unused", "5%", "--dry-run", "--json",
                           config=alice))
    assert dry["packs_to_repack"] >= 1 and dry["packs_written"] == 0
    assert disk_bytes(grid) == before
    done = summary(grid.cli("prune", "--max-unused", "5%", "--json", config=alice))
    assert done["packs_to_repack"] >= 1 and done["packs_written"] >= 1
    settle(grid)
    after = disk_bytes(grid)
    need = summary(grid.cli("stats", "--json", config=alice))
    assert after == need["fragment_bytes"]  # the disks hold exactly the packs in use
    # what stays is within 5% (plus pack headers and erasure padding) of what is used
    assert need["stored_bytes"] <= 1.05 * need["sealed_bytes"] + 4096 * need["packs"]
    assert after < 0.25 * before
    again = summary(grid.cli("prune", "--max-unused", "5%", "--json", config=alice))
    assert again["packs_to_repack"] == 0 and again["packs_dropped"] == 0
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=alice))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []
    assert summary(grid.cli("check", "--json", config=alice))["problems"] == 0
    bad = grid.cli("prune", "--max-unused", "lots", config=alice)
    assert bad.returncode == 2 and "cannot read --max-unused" in bad.stderr
