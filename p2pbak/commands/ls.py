"""`p2pbak ls`: list the files of a snapshot (decrypted here)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from typing import Annotated, Any

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
from p2pbak.commands.snapshots import when


async def _ls(session: Session, ref: str, path: str | None) -> tuple[str, list[Any]]:
    from p2pbak.datapath.snapshots import find_snapshot, list_tree

    async with unlocked(session) as (repo, master):
        snap = await find_snapshot(repo, master, ref)
        return snap.id, await list_tree(repo, master, snap.id, path)


_KIND = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def node_fields(node: Any) -> dict[str, Any]:
    """What a reader wants of a tree node (names as text; no chunk or tree ids)."""
    n = as_dict(node)
    return {"name": os.fsdecode(n["name"]), "path": n.get("path", ""), "type": n["type"],
            "mode": n["mode"], "size": n.get("size", 0),
            "mtime": datetime.fromtimestamp(n["mtime_ns"] / 1e9, UTC).isoformat(),
            **({"target": os.fsdecode(n["target"])} if n.get("target") else {})}


def _line(e: dict[str, Any]) -> str:
    mode = stat.filemode(_KIND.get(e["type"], stat.S_IFREG) | int(e["mode"]))
    name = e["path"] or e["name"]
    if e.get("target"):
        name += f" -> {e['target']}"
    return f"{mode} {int(e['size'] or 0):>12} {when(e['mtime'])} {name}"


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls_cmd(snapshot: Annotated[str, typer.Argument(help="Snapshot id, prefix or `latest`.")],
               path: Annotated[str | None, typer.Argument(
                   help="Folder inside the snapshot (default: everything).")] = None,
               json: JsonOpt = False, config: ConfigOpt = None,
               password_file: PasswordFileOpt = None,
               password_command: PasswordCommandOpt = None,
               no_cache: NoCacheOpt = False) -> None:
        """List the files and folders of a snapshot."""
        rep = reporter(json)
        snap_id, entries = run(_ls(open_session(config, password_file, password_command, no_cache),
                                   snapshot, path))
        rep.emit("snapshot", id=snap_id)
        for entry in entries:
            e = node_fields(entry)
            rep.emit("node", **e)
            if not json:
                rep.out.print(_line(e), markup=False, highlight=False)
