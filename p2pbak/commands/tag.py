"""`p2pbak tag`: add, remove or set the tags of snapshots (each is saved under a new id)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.errors import ExitCode, P2pbakError


def _tags(help_text: str, name: str) -> Any:
    return typer.Option(None, name, help=help_text, metavar="TAG[,TAG]")


async def _retag(session: Session, refs: list[str], add: list[str], remove: list[str],
                 set_to: list[str] | None) -> list[tuple[Any, Any]]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.selection import new_tags, retag
    from p2pbak.datapath.snapshots import find_snapshot

    out = []
    async with unlocked(session) as (repo, master):
        for ref in refs:
            old = await find_snapshot(repo, master, ref)
            tags = new_tags(old.tags, add, remove, set_to)
            out.append((old, await retag(repo, master, old, tags)))
    return out


def register(app: typer.Typer) -> None:
    @app.command("tag")
    @with_options()
    def tag_cmd(opts: Options, snapshots: Annotated[list[str], typer.Argument(
                    help="Snapshot ids, prefixes or `latest`.", metavar="SNAPSHOT...")],
                add: list[str] | None = _tags("Add these tags (repeatable).", "--add"),
                remove: list[str] | None = _tags("Remove these tags (repeatable).",
                                                 "--remove"),
                set_: list[str] | None = _tags("Replace all tags with these (repeatable).",
                                               "--set")) -> None:
        """Change the tags of snapshots; a changed snapshot gets a new id, as in restic."""
        # imported here, not at the top: keeps CLI start-up fast
        from rich.markup import escape

        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.datapath.selection import flat_tags

        rep = opts.reporter()
        if not (add or remove or set_ is not None):
            raise P2pbakError("nothing to change: give --add, --remove or --set",
                              ExitCode.USAGE)
        if set_ is not None and (add or remove):
            raise P2pbakError("give --set alone, or --add/--remove", ExitCode.USAGE)
        done = run(_retag(opts.session(),
                          list(snapshots), flat_tags(add or []), flat_tags(remove or []),
                          None if set_ is None else flat_tags(set_)))
        changed = 0
        for old, new in done:
            changed += old.id != new.id
            rep.emit("snapshot_tagged", old_id=old.id, new_id=new.id, tags=list(new.tags))
            rep.say(escape(f"{old.short_id} -> {new.short_id}: tags "
                           f"{', '.join(new.tags) or '(none)'}"
                           if old.id != new.id else f"{old.short_id}: unchanged"))
        rep.summary(snapshots_changed=changed)
