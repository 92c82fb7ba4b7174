"""Backup over a loopback grid of real processes, against raw zfec and against restic.

Starts a coordinator and --peers (default 10) peer agents on 127.0.0.1, then times, as a user
sees it (`p2pbak backup --json` run as a process):
  1. a backup of --size MiB (default 256) of random files,
  2. a backup of a real tree (a copy of Python's standard library),
  3. the re-run of (2) on the unchanged tree.
(1) and (2) are printed as throughput and as a ratio to zfec's raw encode throughput at the
k/n the grid chose, on the same bytes, measured in this run on every core (zfec releases the
GIL; bench/datapath.py's `raw_zfec`). (3) is printed as a ratio to `restic backup` re-run on
the same tree (restic installs from Debian's packages if missing; skipped with a message if
it cannot be installed).

    python bench/backup.py [--size MiB] [--peers N] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from datapath import raw_zfec  # bench/datapath.py  # noqa: E402

from p2pbak.localgrid.demo import code_in_use  # noqa: E402
from p2pbak.localgrid.grid import Grid, run_cli, start_grid  # noqa: E402

MiB = 1024 * 1024


def timed_backup(grid: Grid, config: Path, path: Path) -> tuple[float, dict]:
    """Wall seconds of one `p2pbak backup --json` process, and its summary."""
    began = time.perf_counter()
    r = run_cli(["backup", str(path), "--json"], env={
        "P2PBAK_CONFIG": str(config), "P2PBAK_PASSWORD_FILE": str(grid.password_file)})
    seconds = time.perf_counter() - began
    if r.returncode != 0:
        sys.exit(f"backup of {path} failed: {r.stderr.strip()}")
    summary = next(m for m in map(json.loads, r.stdout.splitlines())
                   if m.get("message_type") == "summary")
    return seconds, summary


def read_tree(path: Path) -> bytes:
    """The tree's file contents, concatenated: the bytes zfec would have to encode."""
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def zfec_seconds(data: bytes, k: int, n: int, rounds: int = 2) -> float:
    cores = os.cpu_count() or 1
    return min(raw_zfec(memoryview(data), k, n, cores)[0] for _ in range(rounds))  # wall s


def zfec_bound(path: Path, k: int, n: int) -> tuple[float, float]:
    """(MiB in the tree, wall seconds zfec alone takes to encode them)."""
    data = read_tree(path)
    return len(data) / MiB, zfec_seconds(data, k, n)


def random_tree(dest: Path, size: int) -> Path:
    dest.mkdir(parents=True)
    per_file = 32 * MiB
    left, i = size, 0
    while left > 0:
        (dest / f"random{i:03d}.bin").write_bytes(os.urandom(min(per_file, left)))
        left, i = left - per_file, i + 1
    return dest


def stdlib_copy(dest: Path) -> Path:
    lib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(lib, dest, symlinks=True, ignore=shutil.ignore_patterns(
        "__pycache__", "site-packages", "*.pyc"))
    return dest


def restic() -> str | None:
    """The restic binary, installed from Debian's packages if missing; None if impossible."""
    found = shutil.which("restic")
    if found:
        return found
    print("restic not found: installing it (apt-get install -y restic) ...")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "restic"]):
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"restic comparison skipped: cannot install restic ({exc})")
            return None
    return shutil.which("restic")


def restic_rerun(binary: str, tree: Path, work: Path) -> float:
    """Seconds of restic's second `backup` of the unchanged tree (local repository)."""
    env = {**os.environ, "RESTIC_REPOSITORY": str(work / "restic-repo"),
           "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}

    def run(*args: str) -> float:
        began = time.perf_counter()
        subprocess.run([binary, *args], env=env, check=True, capture_output=True)
        return time.perf_counter() - began

    run("init")
    run("backup", "--quiet", str(tree))
    return min(run("backup", "--quiet", str(tree)) for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of random data")
    parser.add_argument("--peers", type=int, default=10, help="peer agents on loopback")
    parser.add_argument("--tree", type=Path, help="real tree (default: a stdlib copy)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p2pbak-bench-"))
    grid = None
    try:
        grid = start_grid(work / "grid", args.peers)
        config = grid.add_supplier("bench")
        rnd = random_tree(work / "random", args.size * MiB)
        tree = args.tree.absolute() if args.tree else stdlib_copy(work / "Lib")
        report(grid, config, rnd, tree, work)
    finally:
        if grid is not None:
            grid.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(grid: Grid, config: Path, rnd: Path, tree: Path, work: Path) -> None:
    cores = os.cpu_count() or 1
    secs, s = timed_backup(grid, config, rnd)
    code = code_in_use(grid)
    if code is None:
        raise SystemExit("bench: the backup placed no fragments on the grid; see the peer logs")
    k, n = code
    mib, bound = zfec_bound(rnd, k, n)
    print(f"grid: coordinator + {len(grid.peers)} peers on 127.0.0.1, code k={k} n={n} "
          f"(factor {n / k:.2f}), {cores} cores")
    print(f"random {mib:.0f} MiB: backup {mib / secs:7.1f} MiB/s ({secs:.1f} s, "
          f"{s['packs_added']} packs); raw zfec {mib / bound:7.1f} MiB/s; "
          f"ratio backup/zfec {bound / secs:.3f}")
    secs, s = timed_backup(grid, config, tree)
    mib, bound = zfec_bound(tree, k, n)
    print(f"tree {tree} ({s['total_files_processed']} files, {mib:.0f} MiB): backup "
          f"{mib / secs:7.1f} MiB/s ({secs:.1f} s, {s['data_added'] / MiB:.0f} MiB added); "
          f"raw zfec {mib / bound:7.1f} MiB/s; ratio backup/zfec {bound / secs:.3f}")
    again = min(timed_backup(grid, config, tree)[0] for _ in range(2))
    print(f"re-run on the unchanged tree: {again:.2f} s (a whole `p2pbak backup` process)")
    binary = restic()
    if binary:
        theirs = restic_rerun(binary, tree, work)
        print(f"restic re-run on the same tree: {theirs:.2f} s; "
              f"ratio p2pbak/restic {again / theirs:.2f} (lower is better)")


if __name__ == "__main__":
    main()
