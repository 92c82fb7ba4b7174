"""Shared helpers for the data path tests: build trees, describe them, run backups."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

from p2pbak.datapath.localrepo import LocalRepository

MASTER = bytes(range(32))


def describe(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under root (root included): type, mode, mtime and content."""
    out: dict[str, tuple[Any, ...]] = {}

    def visit(path: Path, rel: str) -> None:
        st = path.lstat()
        mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path), mtime)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, mtime)
            for child in sorted(os.listdir(path)):
                visit(path / child, f"{rel}/{child}")
        else:
            out[rel] = ("file", mode, mtime, path.read_bytes())

    visit(root, root.name)
    return out


def build(root: Path, spec: dict[str, Any], mtimes: list[int]) -> None:
    """Make a tree from a spec: bytes = file, ("link", target) = symlink, dict = dir."""
    root.mkdir(parents=True, exist_ok=True)
    for name, item in spec.items():
        path = root / name
        if isinstance(item, dict):
            build(path, item, mtimes)
        elif isinstance(item, tuple) and item[0] == "link":
            os.symlink(item[1], path)
        else:
            data, mode = item
            path.write_bytes(data)
            os.chmod(path, mode)
        stamp = mtimes[len(name) % len(mtimes)] if mtimes else 1_600_000_000_000_000_000
        os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
    os.utime(root, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))


def new_repo(path: Path, k: int = 2, n: int = 3) -> LocalRepository:
    return LocalRepository.create(path, k, n)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
