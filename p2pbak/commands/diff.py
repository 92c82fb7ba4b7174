"""`p2pbak diff`: what changed between two snapshots (restic's markers: + - M T U)."""

from __future__ import annotations

from typing import Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.config import format_size


def _snap(which: str) -> Any:
    return typer.Argument(help=f"The {which} snapshot: id, prefix or `latest`.",
                          metavar=f"SNAPSHOT{1 if which == 'first' else 2}")


async def _diff(session: Session, first: str, second: str) -> tuple[Any, Any, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.browse import diff
    from p2pbak.datapath.snapshots import find_snapshot

    async with unlocked(session) as (repo, master):
        old = await find_snapshot(repo, master, first)
        new = await find_snapshot(repo, master, second)
        return old, new, await diff(repo, master, old, new)


def register(app: typer.Typer) -> None:
    @app.command("diff")
    @with_options()
    def diff_cmd(opts: Options, snapshot1: str = _snap("first"),
                 snapshot2: str = _snap("second")) -> None:
        """Show what was added (+), removed (-), modified (M), changed type (T) or only
        changed metadata (U) from SNAPSHOT1 to SNAPSHOT2."""

        rep = opts.reporter()
        old, new, d = run(_diff(opts.session(),
                                snapshot1, snapshot2))
        rep.say(f"comparing snapshot {old.short_id} to {new.short_id}:")
        for c in d.changes:
            rep.emit("change", path=c.path, modifier=c.marker, type=c.node.type)
            if not opts.json and not opts.quiet:
                rep.out.print(f"{c.marker}    {c.path}", markup=False, highlight=False,
                              soft_wrap=True)
        rep.summary(source_snapshot=old.id, target_snapshot=new.id, added=d.added,
                    removed=d.removed, modified=d.modified, bytes_added=d.bytes_added,
                    bytes_removed=d.bytes_removed)
        rep.say(f"{d.added} added, {d.removed} removed, {d.modified} modified "
                f"(files: {format_size(d.bytes_added)} added, "
                f"{format_size(d.bytes_removed)} removed)")
