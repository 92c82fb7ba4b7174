"""Exclude patterns, as restic's --exclude: a glob without "/" matches a base name at any
depth; one with "/" matches the absolute path, anywhere below the root unless it starts
with "/". An excluded directory is not entered."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fnmatch import fnmatchcase


def excluded(path: str, patterns: Sequence[str]) -> bool:
    for raw in patterns:
        pattern = raw.rstrip("/")
        if not pattern:
            continue
        if "/" not in pattern:
            if fnmatchcase(os.path.basename(path), pattern):
                return True
        elif pattern.startswith("/"):
            if fnmatchcase(path, pattern):
                return True
        elif fnmatchcase(path, "*/" + pattern):
            return True
    return False
