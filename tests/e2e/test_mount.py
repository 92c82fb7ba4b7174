"""`mount` on a real grid: the snapshots as a read-only FUSE tree in restic's layout, files
read on demand through the data path, and a clean unmount on SIGINT."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, child_env
from tests.support.grid import GridSpec, one_line_error, summary

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="FUSE is not available here (needs /dev/fuse and fusermount3: apt-get install "
    "fuse3; .ci/run installs it)"), pytest.mark.skipif(
    importlib.util.find_spec("pyfuse3") is None,
    reason="pyfuse3 is not installed (pip install -c constraints.txt -e '.[mount]' after "
    "apt-get install libfuse3-dev pkg-config; .ci/run installs both)")]
GRID = GridSpec(4)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == str(path) for line in f)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home") / "doc"
    (root / "bash").mkdir(parents=True)
    (root / "bash" / "notes.txt").write_text("read through FUSE\n")
    # several chunks (512 KiB..8 MiB each), so reads cross chunk boundaries
    (root / "big.bin").write_bytes(os.urandom(3_500_000))
    (root / "link").symlink_to("bash/notes.txt")
    return root


@pytest.fixture(scope="module")
def alice(grid: Grid, src: Path) -> Path:
    config = grid.add_user("alice", machine="laptop")
    summary(grid.cli("backup", str(src), "--tag", "docs", "--json", config=config))
    return config


def _mount(grid: Grid, alice: Path, mnt: Path) -> subprocess.Popen[str]:
    """`p2pbak mount --json` in a subprocess, returned once it said it is mounted."""
    env = child_env({"P2PBAK_PASSWORD_FILE": str(grid.password_file),
                     "P2PBAK_CACHE_DIR": str(grid.root / "cache"), "P2PBAK_CONFIG": str(alice)})
    proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "mount", str(mnt), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline() or "{}")  # blocks until mounted
    if first.get("message_type") != "status":
        proc.kill()
        pytest.fail(f"mount failed: {first} {proc.communicate()[1]}")
    assert first["action"] == "mounted" and first["snapshots"] == 1
    assert _mounted(mnt)
    return proc


def _gone(mnt: Path) -> bool:
    deadline = time.monotonic() + 5
    while _mounted(mnt) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _mounted(mnt) and os.listdir(mnt) == []


@pytest.fixture(scope="module")
def mounted(grid: Grid, alice: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    mnt = tmp_path_factory.mktemp("mnt")
    proc = _mount(grid, alice, mnt)
    try:
        yield mnt, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def test_layout_is_restics(grid: Grid, alice: Path, mounted: tuple[Path, subprocess.Popen[str]],
                           src: Path) -> None:
    mnt, _ = mounted
    (snap,) = [json.loads(ln) for ln in
               grid.cli("snapshots", "--json", config=alice).stdout.splitlines()]
    assert sorted(os.listdir(mnt)) == ["hosts", "ids", "snapshots", "tags"]
    times = sorted(os.listdir(mnt / "snapshots"))
    assert len(times) == 2 and "latest" in times
    (when,) = [t for t in times if t != "latest"]
    assert os.readlink(mnt / "snapshots" / "latest") == when
    host = snap["host"]
    assert os.listdir(mnt / "hosts") == [host]
    assert sorted(os.listdir(mnt / "tags" / "docs")) == sorted([when, "latest"])
    assert os.listdir(mnt / "ids") == [snap["id"][:8]]
    short = snap["id"][:8]
    # the backed-up path whole below the snapshot's folder, as restic shows it
    for snap in (mnt / "snapshots" / "latest", mnt / "ids" / short,
                 mnt / "hosts" / host / "latest", mnt / "tags" / "docs" / when):
        inside = snap / str(src).lstrip("/")
        assert sorted(os.listdir(inside)) == ["bash", "big.bin", "link"]


def test_files_read_byte_identical(mounted: tuple[Path, subprocess.Popen[str]],
                                   src: Path) -> None:
    latest = mounted[0] / "snapshots" / "latest" / str(src).lstrip("/")
    r = subprocess.run(["ls", "-l", str(latest / "bash")], capture_output=True, text=True)
    assert r.returncode == 0 and "notes.txt" in r.stdout, r.stderr
    for name in ("big.bin", "bash/notes.txt"):
        r = subprocess.run(["cmp", str(latest / name), str(src / name)], capture_output=True)
        assert r.returncode == 0, r.stdout
    assert (latest / "bash" / "notes.txt").read_text() == "read through FUSE\n"
    with open(latest / "big.bin", "rb") as f:  # a read across a chunk boundary
        f.seek(1_000_000)
        assert f.read(2_000_000) == (src / "big.bin").read_bytes()[1_000_000:3_000_000]
    assert os.readlink(latest / "link") == "bash/notes.txt"
    assert (latest / "big.bin").stat().st_size == 3_500_000
    with pytest.raises(OSError):
        (latest / "new.txt").write_text("read-only")


def test_sigint_unmounts_and_prints_the_summary(
        mounted: tuple[Path, subprocess.Popen[str]]) -> None:
    mnt, proc = mounted
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    done = [json.loads(ln) for ln in out.splitlines() if ln.strip()][-1]
    assert done["message_type"] == "summary" and done["mountpoint"] == str(mnt)
    assert done["bytes_read"] >= 3_500_000 and done["files_opened"] >= 2
    assert _gone(mnt)


def test_sigterm_unmounts_too(grid: Grid, alice: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _mount(grid, alice, mnt)
    try:
        assert os.listdir(mnt / "snapshots")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert json.loads(out.splitlines()[-1])["message_type"] == "summary"
    assert _gone(mnt)


def test_bad_mountpoints_are_one_line_errors(grid: Grid, alice: Path, tmp_path: Path) -> None:
    r = grid.cli("mount", str(tmp_path / "nowhere"), config=alice)
    assert r.returncode == 1 and "does not exist" in one_line_error(r)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = grid.cli("mount", str(tmp_path / "full"), config=alice)
    assert r.returncode == 1 and "is not empty" in one_line_error(r)
