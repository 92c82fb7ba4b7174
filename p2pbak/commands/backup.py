"""`p2pbak backup`: chunk, encrypt, pack and erasure-code files onto other users' peers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    ProgressView,
    RetryLockOpt,
    as_dict,
    read_lines,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter
from p2pbak.config import format_size
from p2pbak.errors import ExitCode, P2pbakError, UnreadableFile

if TYPE_CHECKING:
    from p2pbak.client.netrepo import Stats

PathsArg = Annotated[list[Path], typer.Argument(help="Files and folders to back up.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", "-e", help="Skip paths matching this glob (repeatable).")]
ExcludeFileOpt = Annotated[list[Path] | None, typer.Option(
    "--exclude-file", help="Read exclude globs from this file, one a line (repeatable).")]


async def _backup(session: Session, paths: list[Path], excludes: list[str], host: str | None,
                  dry_run: bool, view: ProgressView, tags: list[str]) -> tuple[Any, Stats]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.archiver import backup

    # shared: a prune on another machine of this user waits until this backup is done
    async with unlocked(session, "shared", "backup") as (repo, master):
        result = await backup(repo, master, paths, excludes=excludes, host=host,
                              dry_run=dry_run, progress=view.update, tags=tags,
                              totals=view.shown)
        return result, repo.stats


def interrupted(progress: Any) -> P2pbakError:
    """Ctrl-C: what is safe on the suppliers already, and that a re-run picks it up."""

    packs = int(getattr(progress, "packs_saved", 0))
    saved = (f"{packs} pack(s) ({format_size(int(getattr(progress, 'bytes_saved', 0)))}) "
             "were uploaded and indexed" if packs else "no pack was complete yet")
    return P2pbakError(f"backup interrupted, no snapshot saved: {saved}; run the same "
                       "backup again to resume (it reuses what was uploaded)",
                       ExitCode.INTERRUPTED)


def summary_fields(result: Any, stats: Stats) -> dict[str, Any]:
    """restic's backup summary fields from the archiver's result."""
    s = as_dict(result.summary)
    return {
        **{k: s[k] for k in ("files_new", "files_changed", "files_unmodified", "dirs_new",
                             "dirs_changed", "dirs_unmodified", "packs_added")},
        "data_added": s["bytes_added"],
        "total_files_processed": s["total_files"],
        "total_bytes_processed": s["total_bytes"],
        "bytes_read": s["bytes_read"],
        "fragments_uploaded": stats.fragments_put,  # data_added × n/k goes over the wire
        "bytes_uploaded": stats.bytes_uploaded,
        "fragments_rerouted": stats.fragments_rerouted,  # sent again via a new relay
        "fragments_moved": stats.fragments_moved,  # sent to a spare peer instead
        "links_punched": stats.links_punched,  # direct to relayed peers (hole-punched)
        "total_duration": round(float(s["duration"]), 3),
        "snapshot_id": result.snapshot_id,
    }


def _report(rep: Reporter, fields: dict[str, Any], errors: list[UnreadableFile],
            warnings: list[Any], dry_run: bool) -> None:

    for warning in warnings:
        rep.warn(str(warning))
    for err in errors:
        if rep.json:
            rep.emit("error", during="archival", item=err.path, message=err.reason,
                     fatal=False)
        else:
            rep.warn(f"could not read {err}")
    rep.summary(dry_run=dry_run, **fields)
    rep.say(f"Files: {fields['files_new']} new, {fields['files_changed']} changed, "
            f"{fields['files_unmodified']} unmodified")
    rep.say(f"Added {format_size(int(fields['data_added']))} in {fields['packs_added']} packs "
            f"({format_size(int(fields['total_bytes_processed']))} processed, "
            f"{fields['total_duration']:.1f} s); uploaded "
            f"{format_size(int(fields['bytes_uploaded']))} in {fields['fragments_uploaded']} "
            "erasure-coded fragments")
    if fields["snapshot_id"]:
        rep.say(f"snapshot [bold]{str(fields['snapshot_id'])[:8]}[/] saved")
    elif dry_run:
        rep.say("dry run: nothing was uploaded")


def register(app: typer.Typer) -> None:
    @app.command("backup")
    @with_options(cache=True)
    def backup_cmd(opts: Options, paths: PathsArg, exclude: ExcludeOpt = None,
                   exclude_file: ExcludeFileOpt = None,
                   dry_run: Annotated[bool, typer.Option(
                       "--dry-run", "-n", help="Show what would be uploaded; upload nothing.")]
                   = False,
                   host: Annotated[str | None, typer.Option(
                       "--host", help="Record this host name in the snapshot.")] = None,
                   tag: Annotated[list[str] | None, typer.Option(
                       "--tag", help="Tag the snapshot (a,b or repeat the option).",
                       metavar="TAG[,TAG]")] = None,
                   retry_lock: RetryLockOpt = "0") -> None:
        """Back up files and folders (exit 3: saved, but some files could not be read)."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.datapath.selection import flat_tags
        from p2pbak.store.machinelock import machine_lock

        rep = opts.reporter()
        missing = [str(p) for p in paths if not os.path.lexists(p)]
        if missing:
            raise P2pbakError(f"no such file or folder: {', '.join(missing)}")
        excludes = [*(exclude or []), *read_lines(exclude_file or [])]
        session = opts.session(retry_lock)
        targets = [p.absolute() for p in paths]
        with machine_lock(session.config.cache, retry=session.retry_lock), \
                ProgressView(rep, "backup") as view:
            try:
                result, stats = run(_backup(session, targets, excludes, host, dry_run, view,
                                             flat_tags(tag or [])))
            except KeyboardInterrupt:
                raise interrupted(view.last) from None
        _report(rep, summary_fields(result, stats), list(result.errors), list(result.warnings),
                dry_run)
        if result.errors:
            saved = result.snapshot_id or dry_run
            raise typer.Exit(int(ExitCode.PARTIAL if saved else ExitCode.FAILED))
