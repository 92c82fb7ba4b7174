"""A revoked machine's peer is disqualified and its fragments are repaired onto others;
the owner's backup restores byte-identical afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.config import load
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.support.e2e_repair import fast_grid, placed_on, wait_until
from tests.support.grid import random_files, summary

pytestmark = pytest.mark.slow
GRID = fast_grid(6)


def test_revoked_peer_fragments_are_repaired_elsewhere(grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 4, 512, seed=3)
    summary(grid.cli("backup", str(src), "--json", config=alice))
    before = placed_on(grid)
    counts = {pack: len(names) for pack, names in before.items()}
    stolen = next(p for p in grid.peers if any(p.name in h for h in before.values()))
    spare = tmp_path / "spare" / "config.toml"
    summary(grid.cli("recover", "--coordinator", grid.url, "--user", stolen.name,
                     "--machine", "spare", "--config", str(spare), "--json"))
    summary(grid.cli("machines", "revoke", load(stolen.config).machine_id, "--json",
                     config=spare))

    def repaired() -> bool:
        now = placed_on(grid)
        return all(stolen.name not in now.get(pack, {stolen.name})
                   and len(now[pack]) >= counts[pack] for pack in counts)

    wait_until(repaired, 90, "the revoked peer's fragments repaired elsewhere", grid)
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=alice))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []
