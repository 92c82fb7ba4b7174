"""`p2pbak backup`: chunk, encrypt, pack and erasure-code files onto other users' peers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    ProgressView,
    QuietOpt,
    Session,
    as_dict,
    open_session,
    read_lines,
    reporter,
    run,
    unlocked,
)
from p2pbak.commands.output import Reporter
from p2pbak.errors import ExitCode, P2pbakError

if TYPE_CHECKING:
    from p2pbak.net.netrepo import Stats

PathsArg = Annotated[list[Path], typer.Argument(help="Files and folders to back up.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", "-e", help="Skip paths matching this glob (repeatable).")]
ExcludeFileOpt = Annotated[list[Path] | None, typer.Option(
    "--exclude-file", help="Read exclude globs from this file, one a line (repeatable).")]


async def _backup(session: Session, paths: list[Path], excludes: list[str], host: str | None,
                  dry_run: bool, view: ProgressView) -> tuple[Any, Stats]:
    from p2pbak.datapath.archiver import backup

    # shared: a prune on another machine of this user waits until this backup is done
    async with unlocked(session, lock="shared") as (repo, master):
        result = await backup(repo, master, paths, excludes=excludes, host=host,
                              dry_run=dry_run, progress=view.update)
        return result, repo.stats


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
        "total_duration": round(float(s["duration"]), 3),
        "snapshot_id": result.snapshot_id,
    }


def _report(rep: Reporter, fields: dict[str, Any], errors: list[Any], warnings: list[Any],
            dry_run: bool) -> None:
    from p2pbak.config import format_size

    for warning in warnings:
        rep.warn(str(warning))
    for err in errors:
        item, _, message = str(err).partition(": ")
        if rep.json:
            rep.emit("error", during="archival", item=item, message=message or item,
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
    def backup_cmd(paths: PathsArg, exclude: ExcludeOpt = None,
                   exclude_file: ExcludeFileOpt = None,
                   dry_run: Annotated[bool, typer.Option(
                       "--dry-run", "-n", help="Show what would be uploaded; upload nothing.")]
                   = False,
                   host: Annotated[str | None, typer.Option(
                       "--host", help="Record this host name in the snapshot.")] = None,
                   retry_lock: Annotated[str, typer.Option(
                       "--retry-lock", help="Wait this long (30s, 5m, 1h) for another backup "
                       "of this machine to finish.")] = "0",
                   json: JsonOpt = False, quiet: QuietOpt = False, config: ConfigOpt = None,
                   password_file: PasswordFileOpt = None,
                   password_command: PasswordCommandOpt = None) -> None:
        """Back up files and folders (exit 3: saved, but some files could not be read)."""
        from p2pbak.lock import machine_lock, parse_duration

        rep = reporter(json, quiet)
        wait = parse_duration(retry_lock)
        missing = [str(p) for p in paths if not os.path.lexists(p)]
        if missing:
            raise P2pbakError(f"no such file or folder: {', '.join(missing)}")
        excludes = [*(exclude or []), *read_lines(exclude_file or [])]
        session = open_session(config, password_file, password_command)
        targets = [p.absolute() for p in paths]
        with machine_lock(session.config.cache, retry=wait), ProgressView(rep, "backup") as view:
            result, stats = run(_backup(session, targets, excludes, host, dry_run, view))
        _report(rep, summary_fields(result, stats), list(result.errors), list(result.warnings),
                dry_run)
        if result.errors:
            saved = result.snapshot_id or dry_run
            raise typer.Exit(int(ExitCode.PARTIAL if saved else ExitCode.FAILED))
