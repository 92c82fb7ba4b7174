"""`p2pbak snapshots`: list this user's snapshots (decrypted here, opaque on the server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    NoCacheOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    Session,
    as_dict,
    open_session,
    reporter,
    run,
    unlocked,
)


async def _list(session: Session) -> list[Any]:
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
    return d


def register(app: typer.Typer) -> None:
    @app.command("snapshots")
    def snapshots_cmd(json: JsonOpt = False, config: ConfigOpt = None,
                      password_file: PasswordFileOpt = None,
                      password_command: PasswordCommandOpt = None,
                      no_cache: NoCacheOpt = False) -> None:
        """List your snapshots, oldest first."""
        from rich.table import Table

        rep = reporter(json)
        snaps = [snapshot_fields(s) for s in run(_list(
            open_session(config, password_file, password_command, no_cache)))]
        for s in snaps:
            rep.emit("snapshot", **s)
        if json:
            return
        table = Table("ID", "Time", "Host", "Paths", box=None)
        for s in snaps:
            table.add_row(s["id"][:8], when(s["time"]), s["host"],
                          "\n".join(s["paths"]))
        rep.out.print(table)
        rep.say(f"{len(snaps)} snapshots")
