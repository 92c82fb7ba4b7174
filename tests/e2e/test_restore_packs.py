"""The pack-oriented restorer on a real grid: one pack at a time (--window 1), and holders
SIGKILLed while a restore is under way (every pack keeps exactly k live fragments).

On 8 peers the code is k=2 of n=8: every pack has a fragment on every peer, so killing 6
peers leaves each pack exactly its k, and the systematic holders of some packs are gone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, child_env, fragment_files, pack_code
from tests.support.grid import GridSpec, random_files, stdlib_tree, summary

pytestmark = pytest.mark.slow

GRID = GridSpec(8, serve_args=("--online-window", "60"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = stdlib_tree(tmp_path_factory.mktemp("src"), parts=("json",), binary_kib=256)
    random_files(root / "big", 10, 2048, seed=15)  # 20 MiB: two data packs or more
    return root


@pytest.fixture(scope="module")
def alice(grid: Grid, tree: Path) -> Path:
    config = grid.add_user("alice")
    summary(grid.cli("backup", str(tree), "--json", config=config))
    return config


def test_window_of_one_pack_restores_byte_identical(grid: Grid, alice: Path, tree: Path,
                                                    tmp_path: Path) -> None:
    done = summary(grid.cli("restore", "latest", "--target", str(tmp_path), "--window", "1",
                            "--json", config=alice))
    assert done["files_restored"] == sum(1 for p in tree.rglob("*")
                                         if p.is_file() and not p.is_symlink())
    assert compare_trees(tree, restored_root(tmp_path, tree)) == []


def test_bad_window_is_one_line_error(grid: Grid, alice: Path, tmp_path: Path) -> None:
    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--window", "0",
                 config=alice)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--window" in r.stderr


def test_holders_killed_mid_restore(grid: Grid, alice: Path, tree: Path,
                                    tmp_path: Path) -> None:
    packs = fragment_files(grid)
    assert len(packs) >= 3 and all(len(h) == 8 for h in packs.values()), packs
    k, _ = pack_code(next(iter(packs.values()))[0][1])
    doomed = grid.peers[:8 - k]
    target = tmp_path / "out"
    cmd = [sys.executable, "-m", "p2pbak", "restore", "latest", "--target", str(target),
           "--window", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=child_env({
                                "P2PBAK_CONFIG": str(alice),
                                "P2PBAK_PASSWORD_FILE": str(grid.password_file)}))
    deadline = time.monotonic() + 120
    while not any(target.rglob(".*.tmp")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the restore never started writing"
        time.sleep(0.005)
    running = proc.poll() is None
    for peer in doomed:
        peer.process.kill()
    out, err = proc.communicate(timeout=300)
    assert running, "the restore finished before the holders were killed"
    assert proc.returncode == 0, err
    assert '"message_type": "summary"' in out or '"message_type":"summary"' in out, out
    assert compare_trees(tree, restored_root(target, tree)) == []
    assert not list(target.rglob(".*.tmp"))
