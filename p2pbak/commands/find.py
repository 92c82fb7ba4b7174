"""`p2pbak find`: which snapshots hold a file, by name or path glob (restic's find)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.filters import HostFilterOpt, PathFilterOpt, TagFilterOpt, abs_paths
from p2pbak.commands.ls import node_fields
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.snapshots import when
from p2pbak.errors import ExitCode


async def _find(session: Session, patterns: list[str], snapshots: list[str],
                hosts: list[str], paths: list[str], tags: list[str]) -> list[Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.browse import find
    from p2pbak.datapath.selection import select
    from p2pbak.datapath.snapshots import find_snapshot, list_snapshots

    async with unlocked(session) as (repo, master):
        if snapshots:
            records = [await find_snapshot(repo, master, s) for s in snapshots]
        else:
            records = await list_snapshots(repo, master)
        return await find(repo, master, select(records, hosts, paths, tags), patterns)


def register(app: typer.Typer) -> None:
    @app.command("find")
    @with_options()
    def find_cmd(opts: Options, patterns: Annotated[list[str], typer.Argument(
                     help="Glob on the name (*.txt), or on the path if it has a slash.",
                     metavar="PATTERN...")],
                 snapshot: Annotated[list[str] | None, typer.Option(
                     "--snapshot", "-s", help="Search only this snapshot (repeatable).",
                     metavar="SNAPSHOT")] = None,
                 host: HostFilterOpt = None, path: PathFilterOpt = None,
                 tag: TagFilterOpt = None) -> None:
        """Find files and folders by name across snapshots (exit 1 when nothing matches)."""
        rep = opts.reporter()
        found = run(_find(opts.session(),
                          list(patterns), list(snapshot or []), list(host or []),
                          abs_paths(path), list(tag or [])))
        current = None
        for f in found:
            if f.snapshot.id != current:
                current = f.snapshot.id
                rep.say(f"found in snapshot {f.snapshot.short_id} from "
                        f"{when(f.snapshot.time.isoformat())}:")
            rep.emit("match", snapshot=f.snapshot.id, **{**node_fields(f.node), "path": f.path})
            if not opts.json and not opts.quiet:
                rep.out.print(f"  {f.path}", markup=False, highlight=False, soft_wrap=True)
        rep.summary(matches=len(found), snapshots=len({f.snapshot.id for f in found}))
        if not found:
            rep.say("no match")
            raise typer.Exit(int(ExitCode.FAILED))
