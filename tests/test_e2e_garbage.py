"""forget and prune on a real grid: dropped packs' fragments leave the suppliers' disks.

Tests run in file order and share one grid and one user.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, fragment_files
from tests.e2e_repair_support import query
from tests.grid import grid_fixture, lines, summary  # noqa: F401

pytestmark = pytest.mark.slow


def disk_bytes(grid: Grid) -> int:
    """Bytes of fragment files on every peer's disk (ground truth)."""
    return sum(f.stat().st_size for p in grid.peers
               for f in (p.storage / "fragments").rglob("*") if f.is_file())


def settle(grid: Grid, timeout: float = 60) -> None:
    """Wait until every delete list is empty (the peers delete at their heartbeats)."""
    deadline = time.monotonic() + timeout
    while query(grid, "SELECT count(*) FROM deletions")[0][0]:
        assert time.monotonic() < deadline, "delete lists not worked off"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def alice(grid: Grid) -> Path:
    return grid.add_user("alice", machine="laptop")


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("garbage") / "src"
    root.mkdir()
    return root


def write(src: Path, seed: int) -> None:
    (src / "data.bin").write_bytes(random.Random(seed).randbytes(3 * 1024 * 1024))


@pytest.fixture(scope="module")
def two_backups(grid: Grid, alice: Path, src: Path) -> tuple[set[str], set[str]]:
    """(packs of the first backup only, packs of the second); nothing shared."""
    write(src, 1)
    summary(grid.cli("backup", str(src), "--json", config=alice))
    first = set(fragment_files(grid))
    write(src, 2)
    summary(grid.cli("backup", str(src), "--json", config=alice))
    second = set(fragment_files(grid)) - first
    assert first and second
    return first, second


def test_forget_needs_ids_or_a_policy(grid: Grid, alice: Path) -> None:
    r = grid.cli("forget", config=alice)
    assert r.returncode == 2 and "give snapshot ids or a policy" in r.stderr


def test_dry_run_forgets_nothing(grid: Grid, alice: Path,
                                 two_backups: tuple[set[str], set[str]]) -> None:
    r = grid.cli("forget", "--keep-last", "1", "--dry-run", "--prune", "--json", config=alice)
    s = summary(r)
    assert s["snapshots_to_remove"] == 1 and s["snapshots_removed"] == 0
    assert s["packs_to_drop"] == len(two_backups[0]) and s["packs_dropped"] == 0
    group = [m for m in lines(r.stdout) if m["message_type"] == "group"]
    assert [k["reasons"] for k in group[0]["keep"]] == [["last snapshot"]]
    snaps = [m for m in lines(grid.cli("snapshots", "--json", config=alice).stdout)]
    assert len(snaps) == 2


def test_forget_prune_frees_the_suppliers_disks(grid: Grid, alice: Path, src: Path,
                                                two_backups: tuple[set[str], set[str]],
                                                tmp_path: Path) -> None:
    dropped, kept = two_backups
    settle(grid)  # fragments of cancelled uploads are gone before measuring
    files = fragment_files(grid)
    expected = sum(f.stat().st_size for p in dropped for _, f in files[p])
    before = disk_bytes(grid)
    s = summary(grid.cli("forget", "--keep-last", "1", "--prune", "--json", config=alice))
    assert s["snapshots_removed"] == 1
    assert s["packs_dropped"] == len(dropped)
    assert s["fragment_bytes_freed"] == expected
    assert query(grid, "SELECT count(*) FROM packs p JOIN users u ON u.name = p.user_name"
                       " WHERE u.name = 'alice'")[0][0] == len(kept)
    settle(grid)
    assert before - disk_bytes(grid) == expected
    after = fragment_files(grid)
    assert not dropped & set(after)
    assert {p: len(after[p]) for p in kept} == {p: len(files[p]) for p in kept}
    # what is left restores, byte for byte, and checks clean
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=alice)
    summary(r)
    assert compare_trees(src, restored_root(tmp_path, src)) == []
    c = summary(grid.cli("check", "--read-data", "--json", config=alice))
    assert c["problems"] == 0
    assert c["packs"] == c["packs_read"] == len(kept)  # the index no longer lists dropped ones


def test_second_prune_has_nothing_to_do(grid: Grid, alice: Path) -> None:
    s = summary(grid.cli("prune", "--json", config=alice))
    assert s["packs_dropped"] == 0 and s["indexes_rewritten"] == 0


def test_forget_by_id_then_check_finds_no_problem(grid: Grid, alice: Path, src: Path) -> None:
    def ids() -> list[str]:
        return [m["id"] for m in lines(grid.cli("snapshots", "--json", config=alice).stdout)]

    before = ids()
    write(src, 3)
    made = summary(grid.cli("backup", str(src), "--json", config=alice))["snapshot_id"]
    s = summary(grid.cli("forget", made[:10], "--json", config=alice))
    assert s["snapshots_removed"] == 1
    assert ids() == before
    c = summary(grid.cli("check", "--json", config=alice))
    assert c["problems"] == 0 and c["snapshots"] == len(before)
    p = summary(grid.cli("prune", "--json", config=alice))
    assert p["packs_dropped"] >= 1


def test_check_reports_a_lost_pack(grid: Grid, alice: Path,
                                   two_backups: tuple[set[str], set[str]]) -> None:
    """Fragments deleted behind the coordinator's back: --read-data says which pack."""
    files = fragment_files(grid)
    live = {r[0] for r in query(grid, "SELECT id FROM packs WHERE user_name = 'alice'")}
    victim = sorted(live & set(files))[0]  # not one dropped and still on a delete list
    for _, f in files[victim]:
        f.unlink()
    r = grid.cli("check", "--read-data", "--json", config=alice)
    assert r.returncode == 1
    errors = [m for m in lines(r.stderr) if m["message_type"] == "error"]
    assert errors and all(not m["fatal"] for m in errors)
    assert any(victim[:12] in m["message"] for m in errors)


def test_host_limits_the_policy_to_that_hosts_snapshots(grid: Grid, alice: Path,
                                                        src: Path) -> None:
    def hosts() -> list[str]:
        return [m["host"] for m in lines(grid.cli("snapshots", "--json", config=alice).stdout)]

    others = [h for h in hosts() if h != "other"]
    for _ in range(2):
        summary(grid.cli("backup", str(src), "--host", "other", "--json", config=alice))
    r = grid.cli("forget", "--keep-last", "1", "--host", "other", "--json", config=alice)
    s = summary(r)
    assert s["snapshots_removed"] == 1 and s["snapshots_kept"] == 1
    after = hosts()
    assert after.count("other") == 1
    assert [h for h in after if h != "other"] == others  # other hosts' snapshots untouched
