"""`p2pbak restore`: fetch any k fragments per pack, decode, decrypt, write the files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    ProgressView,
    RetryLockOpt,
    as_dict,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.config import format_size
from p2pbak.errors import ExitCode

SnapshotArg = Annotated[str, typer.Argument(help="Snapshot id (or a prefix), or `latest`.")]


async def _restore(session: Session, ref: str, target: Path, include: list[str],
                   overwrite: bool, window: int | None,
                   view: ProgressView) -> tuple[str, Any, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.packrestore import DEFAULT_WINDOW
    from p2pbak.datapath.restorer import restore
    from p2pbak.datapath.snapshots import find_snapshot

    async with unlocked(session, "shared", "restore") as (repo, master):
        snap = await find_snapshot(repo, master, ref)
        result = await restore(repo, master, snap.id, target, include=include,
                               overwrite=overwrite, progress=view.update,
                               window=window or DEFAULT_WINDOW)
        return snap.id, result, repo.stats


def register(app: typer.Typer) -> None:
    @app.command("restore")
    @with_options(cache=True)
    def restore_cmd(opts: Options, snapshot: SnapshotArg,
                    target: Annotated[Path, typer.Option(
                        "--target", "-t", help="Folder to restore into.", file_okay=False)],
                    include: Annotated[list[str] | None, typer.Option(
                        "--include", "-i", help="Restore only this path (repeatable).")]
                    = None,
                    overwrite: Annotated[bool, typer.Option(
                        "--overwrite", help="Replace files that already exist in the target.")]
                    = False,
                    window: Annotated[int | None, typer.Option(
                        "--window", min=1, help="Packs fetched and written at once (default "
                        "3; memory grows with it, about two packs each).")] = None,
                    retry_lock: RetryLockOpt = "0") -> None:
        """Restore a snapshot into a folder (existing files are kept unless --overwrite)."""

        rep = opts.reporter()
        session = opts.session(retry_lock)
        with ProgressView(rep, "restore") as view:
            snap_id, result, stats = run(_restore(session, snapshot, target.absolute(),
                                           list(include or []), overwrite, window, view))
        fields = as_dict(result)
        errors = fields.pop("errors")
        for err in errors:
            rep.warn(f"could not restore {err}")
        rep.summary(target=str(target), bytes_downloaded=stats.bytes_downloaded,
                    metadata_fetched=stats.metadata_fetched,
                    metadata_cached=stats.metadata_cached,
                    links_punched=stats.links_punched, **fields)
        rep.say(f"restored snapshot [bold]{snap_id[:8]}[/] to {target}: "
                f"{fields['files_restored']} files, {format_size(fields['bytes_restored'])}")
        if errors:
            raise typer.Exit(int(ExitCode.FAILED))
