"""First backup, unchanged re-run and restore: p2pbak on a loopback grid against restic.

Starts a coordinator and --peers (default 10) peer agents on 127.0.0.1; for each tree (a
copy of Python's standard library and a copy of /usr/share/man, many small files) it times,
as a user sees them (one process each): the first `backup`, the re-run on the unchanged
tree and a `restore`, and the same three with `restic` (local repository, its own cache,
in the same run on the same tree). Each is printed with the peak RSS of its process
(GNU time's %M), the CPU seconds of that process (user + system: the client's own work,
not the grid's; steadier than wall time on a loaded machine) and as ratios p2pbak/restic
(lower is better). Re-runs and restores are
repeated --rounds times, the tools interleaved, and the fastest of each counts: on a
shared machine that is the run least disturbed by other load; so are first backups, each
round by a new user of the grid (one more supplier peer each) and into a new restic
repository. Every restore is checked byte-identical against the source (not timed).

p2pbak runs with its bytecode compiled, as an installed package does (pip compiles it):
PYTHONDONTWRITEBYTECODE is dropped from its environment and the source compiled first.

--before DIR runs the restore a second time with the p2pbak source in DIR (e.g.
`git archive <commit> | tar -x -C DIR`), for a before/after ratio on the same tree.

    python bench/restore.py [--peers N] [--tree DIR ...] [--before DIR] [--window W]
                            [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from backup import restic, stdlib_copy  # bench/backup.py  # noqa: E402

import p2pbak  # noqa: E402
from p2pbak.localgrid.demo import code_in_use, compare_trees, restored_root  # noqa: E402
from p2pbak.localgrid.grid import Grid, child_env, start_grid  # noqa: E402

MiB = 1024 * 1024
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)


@dataclass(frozen=True)
class Run:
    seconds: float
    rss_mib: float
    cpu: float  # user + system seconds of the process itself (not the grid's)


def measured(cmd: list[str], env: dict[str, str]) -> Run:
    """Wall seconds and peak RSS of one process run to completion (exit 0 required).

    The RSS is GNU time's %M: the bench's own getrusage would count this (large) process,
    whose memory a forked child starts out sharing.
    """
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M %U %S", "-o", rss.name, *cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - began
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd[:4])} failed: {err.read().decode(errors='replace')}")
        kib, user, system = rss.read().split()[-3:]
        return Run(seconds, int(kib) / 1024, float(user) + float(system))


class P2pbak:
    def __init__(self, grid: Grid, config: Path, window: int | None) -> None:
        self.grid, self.config, self.window = grid, config, window

    def env(self, source: Path | None = None) -> dict[str, str]:
        env = child_env({"P2PBAK_CONFIG": str(self.config),
                         "P2PBAK_PASSWORD_FILE": str(self.grid.password_file),
                         "P2PBAK_CACHE_DIR": str(self.grid.root / "cache")})
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed p2pbak has its .pyc files
        if source is not None:  # an older p2pbak: its source alone on the path
            env["PYTHONPATH"] = str(source)
        return env

    def compile(self, source: Path | None = None) -> None:
        """Byte-compile the p2pbak that runs (not timed): no run compiles it from source."""
        package = (source or Path(p2pbak.__file__).resolve().parent.parent) / "p2pbak"
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)],
                       env=self.env(source), check=True, stdout=subprocess.DEVNULL)

    def fresh(self, name: str) -> P2pbak:
        """Another user of the same grid (a supplier, with its peer): a first backup again."""
        return P2pbak(self.grid, self.grid.add_supplier(name), self.window)

    def backup(self, tree: Path) -> Run:
        return measured([sys.executable, "-m", "p2pbak", "backup", "--quiet", str(tree)],
                        self.env())

    def restore(self, target: Path, source: Path | None = None) -> Run:
        cmd = [sys.executable, "-m", "p2pbak", "restore", "latest", "--quiet",
               "--target", str(target)]
        if self.window and source is None:
            cmd += ["--window", str(self.window)]
        return measured(cmd, self.env(source))


class Restic:
    def __init__(self, binary: str, work: Path) -> None:
        self.binary, self.work = binary, work

    def env(self, name: str) -> dict[str, str]:
        return {**os.environ, "RESTIC_REPOSITORY": str(self.work / f"restic-{name}"),
                "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "restic-cache")}

    def init(self, name: str) -> None:
        measured([self.binary, "init", "--quiet"], self.env(name))

    def backup(self, name: str, tree: Path) -> Run:
        return measured([self.binary, "backup", "--quiet", str(tree)], self.env(name))

    def restore(self, name: str, target: Path) -> Run:
        return measured([self.binary, "restore", "latest", "--quiet", "--target",
                         str(target)], self.env(name))


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def tree_size(tree: Path) -> tuple[int, int]:
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def line(what: str, ours: Run, theirs: Run | None) -> str:
    text = (f"  {what:<17} p2pbak {ours.seconds:7.2f} s (cpu {ours.cpu:6.2f} s) "
            f"{ours.rss_mib:5.0f} MiB")
    if theirs is None:
        return text
    return (text + f" | restic {theirs.seconds:7.2f} s (cpu {theirs.cpu:6.2f} s) "
            f"{theirs.rss_mib:5.0f} MiB | ratio time {ours.seconds / theirs.seconds:5.2f}x "
            f"cpu {ours.cpu / max(theirs.cpu, 0.01):5.2f}x "
            f"RSS {ours.rss_mib / theirs.rss_mib:5.2f}x")


def best(runs: list[Run]) -> Run:
    """The fastest of some runs (the least disturbed by other load), with its peak RSS."""
    return min(runs, key=lambda r: r.seconds)


def bench_tree(name: str, tree: Path, ours: P2pbak, theirs: Restic | None,
               before: Path | None, work: Path, rounds: int) -> None:
    files, size = tree_size(tree)
    print(f"{name}: {tree} ({files} files, {size / MiB:.0f} MiB)")
    firsts: dict[str, list[Run]] = {"ours": [], "theirs": []}
    for i in range(rounds):  # interleaved; each a first backup into an empty repository
        firsts["ours"].append((ours if i == 0 else ours.fresh(f"{name}-first{i}")).backup(tree))
        if theirs is not None:
            repo = name if i == 0 else f"{name}-first{i}"
            theirs.init(repo)
            firsts["theirs"].append(theirs.backup(repo, tree))
    print(line("first backup", best(firsts["ours"]),
               best(firsts["theirs"]) if theirs else None))
    reruns: dict[str, list[Run]] = {"ours": [], "theirs": []}
    for _ in range(rounds):  # interleaved, so both see the same load
        reruns["ours"].append(ours.backup(tree))
        if theirs is not None:
            reruns["theirs"].append(theirs.backup(name, tree))
    print(line("unchanged re-run", best(reruns["ours"]),
               best(reruns["theirs"]) if theirs else None))
    target = work / f"restore-{name}"
    runs: dict[str, list[Run]] = {"ours": [], "theirs": [], "before": []}
    for _ in range(rounds):
        runs["ours"].append(ours.restore(target))
        if compare_trees(tree, restored_root(target, tree)):
            sys.exit(f"p2pbak's restore of {tree} differs from the source")
        shutil.rmtree(target)
        if theirs is not None:
            runs["theirs"].append(theirs.restore(name, target))
            if compare_trees(tree, target / tree.relative_to("/")):  # restic: whole paths
                sys.exit(f"restic's restore of {tree} differs from the source")
            shutil.rmtree(target)
        if before is not None:
            runs["before"].append(ours.restore(target, before))
            shutil.rmtree(target)
    mine = best(runs["ours"])
    print(line("restore", mine, best(runs["theirs"]) if theirs else None))
    if before is not None:
        old = best(runs["before"])
        print(f"  restore before    p2pbak {old.seconds:7.2f} s (cpu {old.cpu:6.2f} s) "
              f"{old.rss_mib:5.0f} MiB ({before}); ratio before/after time "
              f"{old.seconds / mine.seconds:5.2f}x cpu {old.cpu / mine.cpu:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=10, help="peer agents on loopback")
    parser.add_argument("--tree", type=Path, action="append",
                        help="tree to measure (repeatable; default: stdlib and man copies)")
    parser.add_argument("--before", type=Path, help="older p2pbak source to restore with too")
    parser.add_argument("--window", type=int, help="restore --window (default: p2pbak's)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="first backups, re-runs and restores per tool, interleaved; "
                        "the fastest counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p2pbak-bench-restore-"))
    grid = None
    try:
        if args.tree:
            trees = [(t.name, t.absolute()) for t in args.tree]
        else:
            trees = [("stdlib", stdlib_copy(work / "src" / "Lib")),
                     ("man", copy_tree(Path("/usr/share/man"), work / "src" / "man"))]
        grid = start_grid(work / "grid", args.peers)
        ours = P2pbak(grid, grid.add_supplier("bench"), args.window)
        ours.compile()
        if args.before is not None:
            ours.compile(args.before)
        binary = restic()
        theirs = Restic(binary, work) if binary else None
        for i, (name, tree) in enumerate(trees):
            bench_tree(name, tree, ours, theirs, args.before, work, max(1, args.rounds))
            if i == 0:
                code = code_in_use(grid)
                print(f"grid: coordinator + {len(grid.peers)} peers on 127.0.0.1, code "
                      f"{code}, {os.cpu_count()} cores; restic {binary or 'not available'}")
    finally:
        if grid is not None:
            grid.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
