"""`p2pbak snapshots`: list this user's snapshots (decrypted here, opaque on the server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    as_dict,
    run,
)
from p2pbak.commands.filters import HostFilterOpt, PathFilterOpt, TagFilterOpt, abs_paths
from p2pbak.commands.options import Options, with_options


async def _list(session: Session) -> list[Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.snapshots import list_snapshots

    async with unlocked(session) as (repo, master):
        return await list_snapshots(repo, master)


def when(iso: str) -> str:
    """An ISO time (as the JSON lines carry it) as UTC text."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def snapshot_fields(snap: Any) -> dict[str, Any]:
    d = as_dict(snap)
    d["time"] = d["time"].isoformat() if isinstance(d.get("time"), datetime) else d.get("time")
    d["paths"] = [str(p) for p in d.get("paths", [])]
    d["excludes"] = list(d.get("excludes", []))
    d["tags"] = list(d.get("tags", []))
    return d


def register(app: typer.Typer) -> None:
    @app.command("snapshots")
    @with_options(quiet=False, cache=True)
    def snapshots_cmd(opts: Options, host: HostFilterOpt = None, path: PathFilterOpt = None,
                      tag: TagFilterOpt = None) -> None:
        """List your snapshots, oldest first (filtered by --host, --path, --tag)."""
        # imported here, not at the top: keeps CLI start-up fast
        from rich.table import Table

        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.datapath.selection import select

        rep = opts.reporter()
        records = run(_list(opts.session()))
        snaps = [snapshot_fields(s) for s in select(records, host or [], abs_paths(path),
                                                    tag or [])]
        for s in snaps:
            rep.emit("snapshot", **s)
        if opts.json:
            return
        table = Table("ID", "Time", "Host", "Tags", "Paths", box=None)
        for s in snaps:
            table.add_row(s["id"][:8], when(s["time"]), s["host"], ",".join(s["tags"]),
                          "\n".join(s["paths"]))
        rep.out.print(table)
        rep.say(f"{len(snaps)} snapshots")
