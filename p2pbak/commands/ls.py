"""`p2pbak ls`: list the files of a snapshot (decrypted here)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    as_dict,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.snapshots import when


async def _ls(session: Session, ref: str, path: str | None,
              recursive: bool = False) -> tuple[str, list[Any]]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.snapshots import find_snapshot, list_tree

    async with unlocked(session) as (repo, master):
        snap = await find_snapshot(repo, master, ref)
        return snap.id, await list_tree(repo, master, snap.id, path, recursive)


_KIND = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def node_fields(node: Any) -> dict[str, Any]:
    """What a reader wants of a tree node (names as text; no chunk or tree ids)."""
    n = as_dict(node)
    return {"name": os.fsdecode(n["name"]), "path": n.get("path", ""), "type": n["type"],
            "mode": n["mode"], "size": n.get("size", 0),
            "mtime": datetime.fromtimestamp(n["mtime_ns"] / 1e9, UTC).isoformat(),
            **({"target": os.fsdecode(n["target"])} if n.get("target") else {})}


def _line(e: dict[str, Any], long: bool = True) -> str:
    name = e["path"] or e["name"]
    if not long:
        return name + ("/" if e["type"] == "dir" else "")
    mode = stat.filemode(_KIND.get(e["type"], stat.S_IFREG) | int(e["mode"]))
    if e.get("target"):
        name += f" -> {e['target']}"
    return f"{mode} {int(e['size'] or 0):>12} {when(e['mtime'])} {name}"


def register(app: typer.Typer) -> None:
    @app.command("ls")
    @with_options(quiet=False, cache=True)
    def ls_cmd(opts: Options,
               snapshot: Annotated[str, typer.Argument(help="Snapshot id, prefix or `latest`.")],
               path: Annotated[str | None, typer.Argument(
                   help="Folder inside the snapshot, as backed up (/home/a/doc) or below its "
                   "root (doc); default: the top.")] = None,
               recursive: Annotated[bool, typer.Option(
                   "--recursive", "-r", help="Also list everything below, depth first.")]
               = False,
               long: Annotated[bool, typer.Option(
                   "--long", "-l", help="Show mode, size and time (as restic's ls -l).")]
               = False) -> None:
        """List the files and folders of a snapshot."""
        rep = opts.reporter()
        snap_id, entries = run(_ls(opts.session(), snapshot, path, recursive))
        rep.emit("snapshot", id=snap_id)
        for entry in entries:
            e = node_fields(entry)
            rep.emit("node", **e)
            if not opts.json:
                rep.out.print(_line(e, long), markup=False, highlight=False)
