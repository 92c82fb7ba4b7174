"""Reading files through `p2pbak mount` against `p2pbak dump` of the same file (the bound,
measured in the same run on the same grid) and against `restic mount` of the same tree.

Starts a coordinator and --peers (default 6) peer agents on 127.0.0.1 and backs up a folder
holding one --mib MiB random file and a copy of Python's json and email packages (many small
files). Each round (--rounds, default 3; the fastest of each counts, the tools interleaved)
times, as a user sees them:

- dump:   `p2pbak dump latest FILE --target OUT`, one process (start-up, unlock, index, fetch);
- mount:  on a fresh `p2pbak mount` (its start-up timed apart, until its `mounted` line),
          `cat FILE` and `cp -r` of the small folder, so no kernel cache helps;
- restic: the same tree backed up once into a local restic repository, a fresh
          `restic mount`, the same `cat` and `cp -r` (skipped where restic or its FUSE
          does not work).

Every file read is checked byte-identical against the source (not timed). Prints seconds
and the ratios mount/dump and p2pbak/restic (lower is better).

    python bench/mount.py [--peers N] [--mib M] [--rounds R]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2pbak.localgrid.grid import Grid, child_env, start_grid  # noqa: E402

MiB = 1024 * 1024


def source_tree(root: Path, mib: int) -> Path:
    root.mkdir(parents=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    lib = Path(sysconfig.get_paths()["stdlib"])
    for part in ("json", "email"):
        shutil.copytree(lib / part, root / "small" / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed: {r.stderr.decode(errors='replace')[-500:]}")


def same(a: Path, b: Path) -> None:
    r = subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)], capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{a} differs from {b}: {r.stdout.decode(errors='replace')[:500]}")


def unmount(proc: subprocess.Popen[bytes], mnt: Path) -> None:
    proc.send_signal(2)  # SIGINT: both tools unmount on it
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


@contextmanager
def p2pbak_mount(env: dict[str, str], mnt: Path) -> Iterator[float]:
    """A fresh mount; yields the seconds until it said `mounted`."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "mount", str(mnt), "--json"],
                            env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline() or b"{}")
        if line.get("action") != "mounted":
            sys.exit(f"p2pbak mount failed: {line}")
        yield time.perf_counter() - began
    finally:
        unmount(proc, mnt)


@contextmanager
def restic_mount(env: dict[str, str], mnt: Path) -> Iterator[float]:
    began = time.perf_counter()
    proc = subprocess.Popen(["restic", "mount", str(mnt)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (mnt / "snapshots" / "latest").exists():
            if proc.poll() is not None or time.perf_counter() - began > 60:
                raise OSError("restic mount did not come up")
            time.sleep(0.05)
        yield time.perf_counter() - began
    finally:
        unmount(proc, mnt)


def reads(inside: Path, src: Path, work: Path) -> tuple[float, float]:
    """Seconds to `cat` the big file and to `cp -r` the small folder, both checked."""
    out = work / "copy"
    shutil.rmtree(out, ignore_errors=True)
    cat = timed(lambda: run(["sh", "-c", f"cat '{inside / 'big.bin'}' > '{work / 'cat.bin'}'"]))
    cp = timed(lambda: run(["cp", "-r", str(inside / "small"), str(out)]))
    run(["cmp", str(work / "cat.bin"), str(src / "big.bin")])
    same(out, src / "small")
    return cat, cp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=6)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pbak-bench-mount-") as tmp:
        work = Path(tmp)
        src = source_tree(work / "src", args.mib)
        # an operator's deficit allowance: the bench user runs no peer of its own
        grid: Grid = start_grid(work / "grid", args.peers, serve_args=("--max-deficit", "100"))
        try:
            return bench(grid, src, work, args)
        finally:
            grid.stop()


def bench(grid: Grid, src: Path, work: Path, args: argparse.Namespace) -> int:
    config = grid.add_user("bench")
    env = child_env({"P2PBAK_CONFIG": str(config), "P2PBAK_PASSWORD_FILE":
                     str(grid.password_file), "P2PBAK_CACHE_DIR": str(grid.root / "cache")})
    run([sys.executable, "-m", "p2pbak", "backup", "--quiet", str(src)], env)
    renv = {**os.environ, "RESTIC_REPOSITORY": str(work / "restic"), "RESTIC_PASSWORD": "b",
            "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    has_restic = shutil.which("restic") is not None
    if has_restic:
        run(["restic", "init", "--quiet"], renv)
        run(["restic", "backup", "--quiet", str(src)], renv)
    mnt = work / "mnt"
    mnt.mkdir()
    inside = str(src).lstrip("/")
    dumps, ours, theirs = [], [], []
    for _ in range(args.rounds):
        out = work / "dump.bin"
        dumps.append(timed(lambda out=out: run([sys.executable, "-m", "p2pbak", "dump",
                                                "latest", str(src / "big.bin"), "--target",
                                                str(out)], env)))
        run(["cmp", str(out), str(src / "big.bin")])
        with p2pbak_mount(env, mnt) as up:
            ours.append((up, *reads(mnt / "snapshots" / "latest" / inside, src, work)))
        if has_restic:
            try:
                with restic_mount(renv, mnt) as up:
                    theirs.append((up, *reads(mnt / "snapshots" / "latest" / inside, src,
                                              work)))
            except OSError as exc:
                print(f"restic mount skipped: {exc}")
                has_restic = False
    report(args, min(dumps), [min(x) for x in zip(*ours, strict=True)],
           [min(x) for x in zip(*theirs, strict=True)] if theirs else None)
    return 0


def report(args: argparse.Namespace, dump: float, ours: list[float],
           theirs: list[float] | None) -> None:
    up, cat, cp = ours
    print(f"mount bench: {args.peers} peers, {args.mib} MiB file, json+email folder, "
          f"fastest of {args.rounds}")
    print(f"  {'dump of the file (one process)':<37}{dump:7.2f} s")
    print(f"  {'mount start-up (until mounted)':<37}{up:7.2f} s")
    print(f"  {'mount cat of the file':<37}{cat:7.2f} s  "
          f"{args.mib / cat:6.1f} MiB/s  ratio to dump {cat / dump:5.2f}x "
          f"(with start-up {(up + cat) / dump:5.2f}x)")
    print(f"  {'mount cp -r small folder':<37}{cp:7.2f} s")
    if theirs is not None:
        rup, rcat, rcp = theirs
        for what, ours_s, theirs_s in (("start-up", up, rup), ("cat of the file", cat, rcat),
                                       ("cp -r small folder", cp, rcp)):
            print(f"  {'restic mount ' + what:<37}{theirs_s:7.2f} s  p2pbak/restic "
                  f"{ours_s / theirs_s:5.2f}x")


if __name__ == "__main__":
    sys.exit(main())
