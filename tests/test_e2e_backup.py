"""A user's life on a real grid: init, backup, unchanged re-run, restore, peers crash, recover.

Tests run in file order and share one grid and one user; the crash test comes last.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, fragment_files, pack_code, run_cli, wait_for
from tests.grid import (
    grid_fixture,  # noqa: F401
    lines,
    one_line_error,
    stdlib_tree,
    summary,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stdlib_tree(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def alice(grid: Grid) -> Path:
    return grid.add_user("alice", machine="laptop")


@pytest.fixture(scope="module")
def first_backup(grid: Grid, alice: Path, tree: Path) -> dict:
    r = grid.cli("backup", str(tree), "--json", config=alice)
    return summary(r)


def test_backup_reports_restic_style_json(grid: Grid, alice: Path, tree: Path,
                                          first_backup: dict) -> None:
    files = sum(1 for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    assert first_backup["files_new"] == files
    assert first_backup["files_unmodified"] == 0
    assert first_backup["packs_added"] >= 1
    assert first_backup["data_added"] > 0
    assert len(first_backup["snapshot_id"]) == 64


def test_restore_is_byte_identical(grid: Grid, alice: Path, tree: Path,
                                   first_backup: dict, tmp_path: Path) -> None:
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=alice)
    assert summary(r)["snapshot_id"] == first_backup["snapshot_id"]
    assert compare_trees(tree, restored_root(tmp_path, tree)) == []


def test_restore_include_takes_only_that_folder(grid: Grid, alice: Path, tree: Path,
                                                first_backup: dict, tmp_path: Path) -> None:
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--include",
                 str(tree / "Lib" / "json"), "--json", config=alice)
    summary(r)
    got = restored_root(tmp_path, tree)
    assert compare_trees(tree / "Lib" / "json", got / "Lib" / "json") == []
    assert sorted(p.name for p in got.iterdir()) == ["Lib"]
    assert sorted(p.name for p in (got / "Lib").iterdir()) == ["json"]


def test_every_pack_is_spread_over_distinct_peers(grid: Grid,
                                                  first_backup: dict) -> None:
    packs = fragment_files(grid)
    assert len(packs) == first_backup["packs_added"]
    assert first_backup["fragments_uploaded"] == sum(len(h) for h in packs.values())
    assert first_backup["bytes_uploaded"] == sum(
        path.stat().st_size for h in packs.values() for _, path in h)
    for holders in packs.values():
        k, n = pack_code(holders[0][1])
        names = [name for name, _ in holders]
        assert len(names) == len(set(names)), "two fragments of one pack on one peer"
        assert k <= len(names) <= n and len(names) > k


def test_unchanged_rerun_uploads_nothing(grid: Grid, alice: Path, tree: Path,
                                         first_backup: dict) -> None:
    r = grid.cli("backup", str(tree), "--json", config=alice)
    second = summary(r)
    assert second["data_added"] == 0
    assert second["packs_added"] == 0
    assert second["files_new"] == 0 and second["files_changed"] == 0
    assert second["files_unmodified"] == first_backup["files_new"]
    assert second["bytes_read"] == 0  # unchanged files are not read again
    assert second["bytes_uploaded"] == 0 and second["fragments_uploaded"] == 0
    assert second["snapshot_id"] != first_backup["snapshot_id"]


def test_snapshots_ls_and_status(grid: Grid, alice: Path, tree: Path,
                                 first_backup: dict) -> None:
    snaps = [m for m in lines(grid.cli("snapshots", "--json", config=alice).stdout)
             if m["message_type"] == "snapshot"]
    assert first_backup["snapshot_id"] in {s["id"] for s in snaps}
    r = grid.cli("ls", first_backup["snapshot_id"][:8], tree.name, "--json", config=alice)
    assert r.returncode == 0, r.stderr
    nodes = {m["name"]: m for m in lines(r.stdout) if m["message_type"] == "node"}
    assert nodes["p2pbak_private_plans_ünïcödé.txt"]["type"] == "file"
    assert nodes["bin"]["type"] == "dir" and nodes["link"]["target"] == "Lib/json/__init__.py"
    status = summary(grid.cli("status", "--json", config=alice))
    assert status["coordinator_reachable"] is True
    assert status["snapshots"] == len(snaps)
    assert status["bytes_backed_up"] > 0
    holder = next(p for p in grid.peers
                  if any(f.is_file() for f in (p.storage / "fragments").rglob("*")))

    def lent() -> dict:
        return summary(grid.cli("status", "--json", config=holder.config))

    wait_for(lambda: lent()["bytes_stored_for_others"] > 0, 30, "no heartbeat reported bytes")
    lender = lent()
    assert lender["peer_online"] is True and lender["snapshots"] == 0


def test_dry_run_with_excludes_uploads_nothing(grid: Grid, alice: Path, tree: Path,
                                              tmp_path: Path) -> None:
    before = summary(grid.cli("status", "--json", config=alice))
    patterns = tmp_path / "excludes"
    patterns.write_text("# comment\n*.py\n")
    r = grid.cli("backup", str(tree), "--dry-run", "--exclude", "*.bin", "--exclude-file",
                 str(patterns), "--json", config=alice)
    dry = summary(r)
    kept = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()
            and p.suffix not in (".bin", ".py")]
    assert dry["total_files_processed"] == len(kept)
    assert dry["snapshot_id"] is None and dry["dry_run"] is True
    after = summary(grid.cli("status", "--json", config=alice))
    assert (after["snapshots"], after["packs"]) == (before["snapshots"], before["packs"])


def test_restore_refuses_to_overwrite(grid: Grid, alice: Path, tree: Path,
                                      first_backup: dict, tmp_path: Path) -> None:
    assert grid.cli("restore", "latest", "--target", str(tmp_path), config=alice).returncode == 0
    victim = restored_root(tmp_path, tree) / "bin" / "tool.sh"
    victim.write_text("local edit\n")
    r = grid.cli("restore", "latest", "--target", str(tmp_path), config=alice)
    one_line_error(r)
    assert victim.read_text() == "local edit\n"
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--overwrite", config=alice)
    assert r.returncode == 0, r.stderr
    assert compare_trees(tree, restored_root(tmp_path, tree)) == []


def test_init_of_existing_user_points_to_recover(grid: Grid, alice: Path,
                                                 tmp_path: Path) -> None:
    r = run_cli(["init", "--coordinator", grid.url, "--user", "alice", "--config",
                 str(tmp_path / "c.toml"), "--password-file", str(grid.password_file)])
    assert "recover" in one_line_error(r)
    assert not (tmp_path / "c.toml").exists()


def test_recover_with_wrong_passphrase_exits_12(grid: Grid, alice: Path,
                                                tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    config = tmp_path / "new-machine" / "config.toml"
    r = run_cli(["recover", "--coordinator", grid.url, "--user", "alice", "--config",
                 str(config), "--password-file", str(wrong)])
    assert r.returncode == 12
    assert "passphrase" in one_line_error(r)
    assert not config.exists()


def test_recover_on_a_new_machine_restores(grid: Grid, alice: Path, tree: Path,
                                           first_backup: dict, tmp_path: Path) -> None:
    config = tmp_path / "new-machine" / "config.toml"
    r = run_cli(["recover", "--coordinator", grid.url, "--user", "alice", "--config",
                 str(config), "--password-file", str(grid.password_file), "--json"])
    assert summary(r)["user"] == "alice"
    assert config.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "restored"
    r = grid.cli("restore", first_backup["snapshot_id"], "--target", str(target), config=config)
    assert r.returncode == 0, r.stderr
    assert compare_trees(tree, restored_root(target, tree)) == []


def test_restore_survives_total_minus_k_holders_killed(grid: Grid, alice: Path,
                                                       tree: Path, first_backup: dict,
                                                       tmp_path: Path) -> None:
    packs = fragment_files(grid)
    doomed = _peers_to_kill(packs)
    by_name = {p.name: p for p in grid.peers}
    for name in doomed:
        by_name[name].process.kill()
    for holders in packs.values():
        k, _ = pack_code(holders[0][1])
        alive = [n for n, _ in holders if n not in doomed]
        assert len(alive) >= k
    _, holders = max(packs.items(), key=lambda kv: len(kv[1]))
    k, _ = pack_code(holders[0][1])
    assert len([n for n, _ in holders if n not in doomed]) == k, "not total-k of a pack killed"
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=alice)
    summary(r)
    assert compare_trees(tree, restored_root(tmp_path, tree)) == []
    # a new backup cannot place its fragments now: exit 14, one line, nothing saved
    new = tmp_path / "new"
    new.mkdir()
    (new / "fresh.bin").write_bytes(bytes(range(256)) * 4096)
    before = summary(grid.cli("status", "--json", config=alice))
    r = grid.cli("backup", str(new), config=alice)
    assert r.returncode == 14, r.stderr
    one_line_error(r)
    after = summary(grid.cli("status", "--json", config=alice))
    assert after["snapshots"] == before["snapshots"]


def _peers_to_kill(packs: dict[str, list[tuple[str, Path]]]) -> set[str]:
    """total−k holders of the widest pack, chosen so every pack keeps at least k alive."""
    codes = {pid: pack_code(h[0][1]) for pid, h in packs.items()}
    holders = {pid: {name for name, _ in h} for pid, h in packs.items()}
    widest = max(holders, key=lambda pid: len(holders[pid]))
    budget = len(holders[widest]) - codes[widest][0]
    doomed: set[str] = set()
    for _ in range(budget):
        def slack(name: str) -> int:
            return min(len(h - doomed - {name}) - codes[pid][0] for pid, h in holders.items())
        doomed.add(max(sorted(holders[widest] - doomed), key=slack))
    return doomed
