"""`p2pbak dump`: a file of a snapshot to stdout, byte for byte, or a folder as a tar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.options import Options, with_options


async def _dump(session: Session, ref: str, path: str, out: BinaryIO) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.dump import dump
    from p2pbak.datapath.paths import in_snapshot
    from p2pbak.datapath.snapshots import find_snapshot

    async with unlocked(session) as (repo, master):
        record = await find_snapshot(repo, master, ref)
        return await dump(repo, master, record, in_snapshot(record.paths, path), out)


def register(app: typer.Typer) -> None:
    @app.command("dump")
    @with_options()
    def dump_cmd(opts: Options, snapshot: Annotated[str, typer.Argument(
                     help="Snapshot id, prefix or `latest`.", metavar="SNAPSHOT")],
                 path: Annotated[str, typer.Argument(
                     help="File or folder in the snapshot, as backed up (/home/a/x) or "
                     "below its root (x).", metavar="PATH")],
                 target: Annotated[Path | None, typer.Option(
                     "--target", "-o", help="Write here instead of to standard output.",
                     dir_okay=False, metavar="FILE")] = None) -> None:
        """Write a file of a snapshot to standard output, or a folder as a tar stream
        (with --target, --json prints a summary; on standard output only the data)."""
        rep = opts.reporter()
        session = opts.session()
        if target is None:
            run(_dump(session, snapshot, path, sys.stdout.buffer))
            sys.stdout.buffer.flush()
            return
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as out:
                done = run(_dump(session, snapshot, path, out))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        rep.summary(target=str(target), **done)
        # imported here, not at the top: keeps CLI start-up fast
        from rich.markup import escape

        rep.say(escape(f"wrote {target} ({done['type']})"))
