"""Snapshot filters shared by snapshots, find, stats and forget (restic's --host/--path/--tag)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

HostFilterOpt = Annotated[list[str] | None, typer.Option(
    "--host", help="Only snapshots of this host (repeatable).", metavar="HOST")]
PathFilterOpt = Annotated[list[str] | None, typer.Option(
    "--path", help="Only snapshots of this backed-up path (repeatable: all of them).",
    metavar="PATH")]
TagFilterOpt = Annotated[list[str] | None, typer.Option(
    "--tag", help="Only snapshots with these tags: a,b means both; repeat for either.",
    metavar="TAG[,TAG]")]


def abs_paths(paths: list[str] | None) -> list[str]:
    """`--path` values as the absolute paths snapshots record."""
    return [os.path.abspath(p) for p in paths or []]
