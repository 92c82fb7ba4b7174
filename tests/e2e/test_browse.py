"""diff, find, dump, stats and tags on a real grid, with restic's output for the same case.

One user, two snapshots of one folder: between them one file changed, one was added and
one removed. Tests run in file order and share the grid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, child_env, fragment_files
from tests.support.grid import GridSpec, lines, one_line_error, summary

pytestmark = pytest.mark.slow
GRID = GridSpec(4)
LONG = "a-folder-name-long-enough-that-any-80-column-wrap-would-split-it-" * 2


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home") / "doc"
    (root / "bash").mkdir(parents=True)
    (root / "bash" / "notes.txt").write_text("same in both\n")
    (root / "changed.txt").write_text("first version\n")
    (root / "removed.txt").write_text("only in the first\n")
    (root / "big.bin").write_bytes(os.urandom(700_000))
    (root / LONG).mkdir()
    (root / LONG / "deep.txt").write_text("far down\n")
    return root


@pytest.fixture(scope="module")
def alice(grid: Grid) -> Path:
    return grid.add_user("alice", machine="laptop")


@pytest.fixture(scope="module")
def snaps(grid: Grid, alice: Path, src: Path) -> tuple[str, str]:
    first = summary(grid.cli("backup", str(src), "--tag", "keepme", "--json", config=alice))
    (src / "changed.txt").write_text("second version, longer\n")
    (src / "removed.txt").unlink()
    (src / "added.txt").write_text("new in the second\n")
    second = summary(grid.cli("backup", str(src), "--json", config=alice))
    return first["snapshot_id"], second["snapshot_id"]


def test_diff_marks_added_removed_modified_as_restic(grid: Grid, alice: Path, src: Path,
                                                    snaps: tuple[str, str]) -> None:
    r = grid.cli("diff", snaps[0][:8], snaps[1][:8], config=alice)
    assert r.returncode == 0, r.stderr
    changes = [ln for ln in r.stdout.splitlines() if ln[:1] in "+-MTU" and "    /" in ln]
    # restic 0.14 prints the same three lines for this case
    assert changes == [f"+    {src}/added.txt", f"M    {src}/changed.txt",
                       f"-    {src}/removed.txt"]
    out = lines(grid.cli("diff", snaps[0], snaps[1], "--json", config=alice).stdout)
    got = {(m["modifier"], m["path"]) for m in out if m["message_type"] == "change"}
    assert got == {("+", f"{src}/added.txt"), ("M", f"{src}/changed.txt"),
                   ("-", f"{src}/removed.txt")}
    total = out[-1]
    assert (total["added"], total["removed"], total["modified"]) == (1, 1, 1)


def test_find_a_name_in_both_snapshots(grid: Grid, alice: Path, src: Path,
                                       snaps: tuple[str, str]) -> None:
    out = lines(grid.cli("find", "notes.txt", "--json", config=alice).stdout)
    found = {(m["snapshot"], m["path"]) for m in out if m["message_type"] == "match"}
    assert found == {(s, f"{src}/bash/notes.txt") for s in snaps}
    only_first = lines(grid.cli("find", "removed.*", "--json", config=alice).stdout)
    assert [m["snapshot"] for m in only_first if m["message_type"] == "match"] == [snaps[0]]
    r = grid.cli("find", "nothing-like-this", config=alice)
    assert r.returncode == 1 and "no match" in r.stdout


def test_dump_a_file_byte_identical_and_a_folder_as_tar(grid: Grid, alice: Path, src: Path,
                                                        snaps: tuple[str, str],
                                                        tmp_path: Path) -> None:
    env = child_env({"P2PBAK_CONFIG": str(alice),
                     "P2PBAK_PASSWORD_FILE": str(grid.password_file)})
    r = subprocess.run([sys.executable, "-m", "p2pbak", "dump", "latest", f"{src}/big.bin"],
                       capture_output=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (src / "big.bin").read_bytes()
    tar = subprocess.run([sys.executable, "-m", "p2pbak", "dump", "latest", str(src)],
                         capture_output=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert tar.returncode == 0, tar.stderr
    untar = subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=tar.stdout,
                           capture_output=True, timeout=60)
    assert untar.returncode == 0, untar.stderr
    assert (tmp_path / "doc" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (tmp_path / "doc" / "bash" / "notes.txt").read_text() == "same in both\n"
    assert "not in this snapshot" in one_line_error(
        grid.cli("dump", "latest", f"{src}/no-such-file", config=alice))


def test_stats_agree_with_status_and_the_suppliers_disks(grid: Grid, alice: Path,
                                                         src: Path,
                                                         snaps: tuple[str, str]) -> None:
    every = summary(grid.cli("stats", "--json", config=alice))
    status = summary(grid.cli("status", "--json", config=alice))
    assert every["snapshots"] == 2
    assert every["repository_bytes"] == status["bytes_backed_up"]
    assert every["repository_packs"] == status["packs"]
    assert every["stored_bytes"] == status["bytes_backed_up"]  # nothing forgotten yet
    on_disk = [p for holders in fragment_files(grid).values() for _, p in holders]
    assert every["fragments"] == len(on_disk)
    assert every["fragment_bytes"] == sum(p.stat().st_size for p in on_disk)
    assert every["erasure_expansion"] > 1.2  # a code that survives a lost third
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    latest = summary(grid.cli("stats", "latest", "--json", config=alice))
    assert latest["restore_bytes"] == size and latest["files"] == 5
    # two snapshots of almost the same files: dedup keeps the raw data near one copy
    assert every["restore_bytes"] > 1.9 * size
    assert every["dedup_ratio"] > 1.9


def test_paths_as_backed_up_work_in_ls_and_restore(grid: Grid, alice: Path, src: Path,
                                                   snaps: tuple[str, str],
                                                   tmp_path: Path) -> None:
    for path in (f"{src}/bash", f"{src}/bash".lstrip("/"), "doc/bash"):
        r = grid.cli("ls", "latest", path, "--json", config=alice)
        assert r.returncode == 0, r.stderr
        assert [m["name"] for m in lines(r.stdout) if m["message_type"] == "node"] \
            == ["notes.txt"]
    for include in (f"{src}/bash", f"{src}/bash".lstrip("/")):
        target = tmp_path / include.replace("/", "_")
        summary(grid.cli("restore", "latest", "--target", str(target), "--include", include,
                         "--json", config=alice))
        assert (target / "doc" / "bash" / "notes.txt").read_text() == "same in both\n"
        assert not (target / "doc" / "big.bin").exists()


def test_text_output_never_wraps_when_piped(grid: Grid, alice: Path, src: Path,
                                           snaps: tuple[str, str]) -> None:
    deep = f"{src}/{LONG}/deep.txt"
    listing = grid.cli("ls", "latest", str(src), "--recursive", config=alice).stdout
    assert f"doc/{LONG}/deep.txt" in listing.splitlines()
    assert f"doc/{LONG}/" in listing.splitlines() and "doc/bash/notes.txt" in listing
    long = grid.cli("ls", "latest", f"{src}/{LONG}", "-l", config=alice).stdout.splitlines()
    assert len(long) == 1 and long[0].startswith("-rw") and long[0].endswith(
        f"doc/{LONG}/deep.txt")
    assert f"  {deep}" in grid.cli("find", "deep.txt", config=alice).stdout.splitlines()
    table = grid.cli("snapshots", config=alice).stdout.splitlines()
    assert any(line.rstrip().endswith(str(src)) and line.strip().startswith(snaps[1][:8])
               for line in table), table


def test_tags_filter_and_forget_keep_tag(grid: Grid, alice: Path, snaps: tuple[str, str]
                                         ) -> None:
    def listed(*args: str) -> list[dict]:
        out = lines(grid.cli("snapshots", *args, "--json", config=alice).stdout)
        return [m for m in out if m["message_type"] == "snapshot"]

    assert [s["id"] for s in listed("--tag", "keepme")] == [snaps[0]]
    retagged = lines(grid.cli("tag", snaps[1][:8], "--add", "weekly,extra", "--json",
                              config=alice).stdout)
    new_id = next(m["new_id"] for m in retagged if m["message_type"] == "snapshot_tagged")
    assert new_id != snaps[1]
    assert [s["tags"] for s in listed("--tag", "weekly,extra")] == [["extra", "weekly"]]
    assert listed("--tag", "weekly,keepme") == []
    assert len(listed("--tag", "weekly", "--tag", "keepme")) == 2
    assert listed("--host", "elsewhere") == []
    r = grid.cli("forget", "--keep-last", "1", "--dry-run", config=alice)
    assert "snapshots for (host [" in r.stdout and "keep 1, remove 1" in r.stdout
    summary(grid.cli("tag", new_id, "--remove", "weekly,extra", "--json", config=alice))
    gone = summary(grid.cli("forget", "--keep-last", "1", "--keep-tag", "keepme", "--json",
                            config=alice))
    assert gone["snapshots_removed"] == 0 and gone["snapshots_kept"] == 2
    assert summary(grid.cli("forget", "--tag", "keepme", "--keep-last", "0", "--keep-tag",
                            "nothing", "--json", config=alice))["snapshots_removed"] == 1
    assert [s["tags"] for s in listed()] == [[]]

