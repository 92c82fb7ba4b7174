"""`p2pbak demo`: a whole grid on loopback, a real backup, a real restore, a byte-level check.

Also home of the two helpers the end-to-end tests share with the demo: a sample tree that
exercises the awkward cases (symlink, empty folder, empty file, unicode names, modes,
mtimes) and a tree comparison that checks content, modes and mtimes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pbak.errors import P2pbakError
from p2pbak.localgrid.grid import Grid, fragment_files, pack_code, shell_env, start_grid

CONSUMER = "alice"
_PAST = 1_600_000_000  # a fixed mtime, so a restore that forgets mtimes is caught


def sample_tree(root: Path, *, seed: int = 7, random_bytes: int = 3 * 1024 * 1024) -> Path:
    """A few MiB of mixed files: text, random, zeros, unicode names, links, empty things."""
    rng = random.Random(seed)
    words = ["backup", "peer", "fragment", "market", "credit", "supply", "erasure", "pack"]
    files: dict[str, bytes] = {
        "docs/readme.txt": " ".join(rng.choice(words) for _ in range(40_000)).encode(),
        "docs/ünïcödé — 日本語.txt": "ünïcödé names survive\n".encode() * 100,
        "data/random.bin": rng.randbytes(random_bytes),
        "data/zeros.bin": bytes(1024 * 1024),
        "nested/a/b/c/deep.txt": b"deep\n",
        "empty_file": b"",
        "bin/run.sh": b"#!/bin/sh\necho restored\n",
        "private.txt": b"only for me\n",
    }
    for i in range(20):
        files[f"src/module_{i:02d}.py"] = f"VALUE = {rng.random()!r}\n".encode() * (i + 1)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "bin/run.sh").chmod(0o755)
    (root / "private.txt").chmod(0o600)
    (root / "empty dir").mkdir(exist_ok=True)
    (root / "link to readme").symlink_to("docs/readme.txt")
    for i, path in enumerate(sorted(root.rglob("*"))):
        if not path.is_symlink():
            os.utime(path, ns=((_PAST + i) * 10**9 + 123_456_789,) * 2)
    for path in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                       key=lambda p: -len(p.parts)):
        os.utime(path, ns=(_PAST * 10**9,) * 2)
    return root


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Differences between two trees (content, type, mode, mtime, symlink target); [] if same."""
    diffs: list[str] = []
    want, got = _walk(expected), _walk(actual)
    for rel in sorted(want.keys() - got.keys()):
        diffs.append(f"missing: {rel}")
    for rel in sorted(got.keys() - want.keys()):
        diffs.append(f"unexpected: {rel}")
    for rel in sorted(want.keys() & got.keys()):
        diffs += [f"{rel}: {d}" for d in _compare(expected / rel, actual / rel, want[rel],
                                                 got[rel])]
    return diffs


def _walk(root: Path) -> dict[str, os.stat_result]:
    out: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.lstat()
    return out


def _compare(a: Path, b: Path, sa: os.stat_result, sb: os.stat_result) -> list[str]:
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return ["type differs"]
    if stat.S_ISLNK(sa.st_mode):
        return [] if os.readlink(a) == os.readlink(b) else ["symlink target differs"]
    diffs = []
    if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
        diffs.append(f"mode {stat.S_IMODE(sa.st_mode):o} != {stat.S_IMODE(sb.st_mode):o}")
    if sa.st_mtime_ns != sb.st_mtime_ns:
        diffs.append(f"mtime {sa.st_mtime_ns} != {sb.st_mtime_ns}")
    if stat.S_ISREG(sa.st_mode) and not _same_bytes(a, b):
        diffs.append("content differs")
    return diffs


def _same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def restored_root(target: Path, source: Path) -> Path:
    """Where a restore into `target` puts `source` (a snapshot names it by its base name)."""
    return target / source.absolute().name


def fragments_per_peer(grid: Grid) -> dict[str, int]:
    return {p.name: sum(1 for f in (p.storage / "fragments").rglob("*") if f.is_file())
            if (p.storage / "fragments").exists() else 0 for p in grid.peers
            if p.name != CONSUMER}  # the user's own peer holds none of its own packs


def code_in_use(grid: Grid) -> tuple[int, int] | None:
    """k and n read from a stored fragment's header."""
    for found in fragment_files(grid).values():
        return pack_code(found[0][1])
    return None


@dataclass
class DemoReport:
    peers: int
    root: str
    source: str
    files: int = 0
    bytes: int = 0
    k: int = 0
    n: int = 0
    snapshot_id: str = ""
    data_added: int = 0
    packs_added: int = 0
    bytes_uploaded: int = 0
    backup_seconds: float = 0.0
    restore_seconds: float = 0.0
    fragments_per_peer: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    verified: bool = False
    kept: bool = False
    config: str = ""
    password_file: str = ""
    stop_command: str = ""


def run_demo(peers: int = 10, path: Path | None = None, keep: bool = False,
             say: Any = print) -> DemoReport:
    """Start a grid, back up `path` (or a sample tree) as a new user, restore, verify."""
    if peers < 3:
        raise P2pbakError("a grid needs at least 3 peers: use --peers 3 or more")
    if path is not None and not path.is_dir():
        raise P2pbakError(f"{path} is not a folder: give --path an existing folder")
    root = Path(tempfile.mkdtemp(prefix="p2pbak-demo-"))
    grid: Grid | None = None
    try:
        say(f"starting a coordinator and {peers} peers under {root} ...")
        grid = start_grid(root, peers)
        source = path.absolute() if path else sample_tree(root / "sample")
        report = DemoReport(peers=peers, root=str(root), source=str(source))
        _backup_restore(grid, source, report, say)
        report.fragments_per_peer = fragments_per_peer(grid)
        report.k, report.n = code_in_use(grid) or (0, 0)
        report.kept = keep
        if keep:
            grid.detach()
            report.config = str(root / "users" / CONSUMER / "config.toml")
            report.password_file = str(grid.password_file)
            report.stop_command = f"{grid.stop_script()} && rm -rf {root}"
        return report
    finally:
        if grid is not None and not keep:
            grid.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _backup_restore(grid: Grid, source: Path, report: DemoReport, say: Any) -> None:
    say(f"starting the peer of user {CONSUMER!r} (a new account earns its first backup) ...")
    config = grid.add_supplier(CONSUMER)
    say(f"backing up {source} as user {CONSUMER!r} ...")
    t0 = time.monotonic()
    summary = _cli_json(grid, config, "backup", str(source), "--json")
    report.backup_seconds = round(time.monotonic() - t0, 2)
    report.snapshot_id = str(summary["snapshot_id"])
    report.files = int(summary["total_files_processed"])
    report.bytes = int(summary["total_bytes_processed"])
    report.data_added = int(summary["data_added"])
    report.packs_added = int(summary["packs_added"])
    report.bytes_uploaded = int(summary["bytes_uploaded"])
    target = grid.root / "restored"
    say(f"restoring snapshot {report.snapshot_id[:8]} into {target} ...")
    t0 = time.monotonic()
    _cli_json(grid, config, "restore", report.snapshot_id, "--target", str(target), "--json")
    report.restore_seconds = round(time.monotonic() - t0, 2)
    report.differences = compare_trees(source, restored_root(target, source))
    report.verified = not report.differences


def _cli_json(grid: Grid, config: Path, *args: str) -> dict[str, Any]:
    """Run a client command with --json; its summary line (a one-line error if it failed)."""
    r = grid.cli(*args, config=config)
    summary: dict[str, Any] | None = None
    for line in r.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("message_type") == "summary":
            summary = msg
    if r.returncode != 0 or summary is None:
        raise P2pbakError(f"`p2pbak {args[0]}` failed (exit {r.returncode}): "
                          f"{_error_text(r.stderr)}")
    return summary


def _error_text(stderr: str) -> str:
    for line in reversed(stderr.strip().splitlines()):
        try:
            msg = json.loads(line)
        except ValueError:
            return line
        if isinstance(msg, dict) and msg.get("message"):
            return str(msg["message"])
    return "no error message"


def keep_instructions(report: DemoReport) -> list[str]:
    env = shell_env(Path(report.config), Path(report.password_file))
    return [f"{env} p2pbak snapshots", f"{env} p2pbak status", f"stop it: {report.stop_command}"]
