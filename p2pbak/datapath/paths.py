"""Paths as the user typed them (the absolute paths `snapshots` shows) and paths inside a
snapshot (below its root tree, whose entries are the base names of the backed-up paths)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def root_names(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(name in the root tree, backed-up path), made unique as the archiver makes them."""
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for path in paths:
        base = os.path.basename(path.rstrip("/")) or "root"
        name, n = base, 0
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        out.append((name, path))
    return out


def in_snapshot(paths: Sequence[str], path: str | None) -> str:
    """`path` (absolute as backed up, the same without its leading slash, or relative to the
    snapshot root) as a path below the root tree, without slashes at either end. The backed-up
    paths win: `home/a/doc/x` is /home/a/doc/x when /home/a/doc was backed up."""
    text = path or ""
    if not text.strip("/"):
        return ""
    absolute = "/" + text.strip("/")
    best: tuple[int, str] | None = None  # the longest backed-up path holding it wins
    for name, original in root_names(paths):
        top = "/" + original.strip("/")
        if absolute == top:
            found = name
        elif absolute.startswith(top.rstrip("/") + "/"):
            found = name + "/" + absolute[len(top.rstrip("/")) + 1:]
        else:
            continue
        if best is None or len(top) > best[0]:
            best = (len(top), found)
    return best[1] if best else text.strip("/")


def shown(paths: Sequence[str], rel: str) -> str:
    """A path below the root tree as the user backed it up (absolute), restic style."""
    name, _, rest = rel.partition("/")
    for root, original in root_names(paths):
        if root == name:
            base = "/" + original.strip("/") if original.strip("/") else ""
            return f"{base}/{rest}" if rest else (base or "/")
    return "/" + rel
