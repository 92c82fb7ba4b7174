"""`p2pbak ls`: list the files of a snapshot (decrypted here)."""

from __future__ import annotations

import stat
from typing import Annotated, Any

import typer

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    Session,
    as_dict,
    connect,
    open_session,
    reporter,
    run,
    unlock,
)
from p2pbak.commands.snapshots import when


async def _ls(session: Session, ref: str, path: str | None) -> tuple[str, list[Any]]:
    from p2pbak.datapath.snapshots import find_snapshot, list_tree

    async with connect(session.config) as repo:
        master = await unlock(repo, session.passphrase)
        snap = await find_snapshot(repo, master, ref)
        return snap.id, await list_tree(repo, master, snap.id, path)


def _line(e: dict[str, Any]) -> str:
    mode = stat.filemode(int(e.get("mode", 0))) if e.get("mode") is not None else "?"
    name = str(e.get("path") or e.get("name", ""))
    if e.get("type") == "symlink" and e.get("target"):
        name += f" -> {e['target']}"
    mtime = e.get("mtime")
    if isinstance(mtime, int) and mtime > 10**12:  # nanoseconds
        mtime = mtime / 1e9
    return f"{mode} {int(e.get('size') or 0):>12} {when(mtime)} {name}"


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls_cmd(snapshot: Annotated[str, typer.Argument(help="Snapshot id, prefix or `latest`.")],
               path: Annotated[str | None, typer.Argument(
                   help="Folder inside the snapshot (default: everything).")] = None,
               json: JsonOpt = False, config: ConfigOpt = None,
               password_file: PasswordFileOpt = None,
               password_command: PasswordCommandOpt = None) -> None:
        """List the files and folders of a snapshot."""
        rep = reporter(json)
        snap_id, entries = run(_ls(open_session(config, password_file, password_command),
                                   snapshot, path))
        rep.emit("snapshot", id=snap_id)
        for entry in entries:
            e = as_dict(entry)
            e.pop("chunks", None)  # internal: chunk ids mean nothing to a reader
            rep.emit("node", **e)
            if not json:
                rep.out.print(_line(e), markup=False, highlight=False)
