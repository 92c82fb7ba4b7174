"""`p2pbak forget`: remove snapshots, by id or by a keep policy (restic's `--keep-*`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    RetryLockOpt,
    run,
)
from p2pbak.commands.filters import PathFilterOpt, TagFilterOpt, abs_paths
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter
from p2pbak.commands.prune import DryRunOpt, locked, prune_repo
from p2pbak.commands.prune import report as report_prune
from p2pbak.errors import ExitCode, P2pbakError

if TYPE_CHECKING:
    from p2pbak.datapath.retention import Policy
    from p2pbak.datapath.snapshots import SnapshotRecord


def _keep(name: str, what: str) -> Any:
    return typer.Option(0, f"--keep-{name}", help=f"Keep {what} (-1: no limit).")


async def _decide(session: Session, ids: list[str], policy: Policy, host: str | None,
                  dry_run: bool, only: tuple[list[str], list[str]] = ([], []),
                  keep_tags: list[str] | None = None) -> list[dict[str, Any]]:
    """One group line per host+paths group; removes the snapshots unless `dry_run`.
    `only` is the (paths, tags) filter; snapshots with any of `keep_tags` are kept."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.retention import apply_policy, group_by
    from p2pbak.datapath.selection import keep_tagged, select
    from p2pbak.datapath.snapshots import find_snapshot, list_snapshots

    # exclusive, as restic's forget: a restore may be about to read a snapshot removed here
    lock = "shared" if dry_run else "exclusive"
    async with unlocked(session, lock, "forget") as (repo, master):
        if ids:
            chosen = {r.id: r for r in [await find_snapshot(repo, master, i) for i in ids]}
            records = sorted(chosen.values(), key=lambda r: (r.time, r.id))  # listing order
            groups = [_group(records, [], {})]
        else:
            records = select(await list_snapshots(repo, master), [host] if host else [],
                             *only)
            groups = []
            for members in group_by(records, lambda r: (r.host, r.paths)).values():
                d = keep_tagged(apply_policy(members, policy, lambda r: r.time), keep_tags)
                groups.append(_group(d.remove, d.keep, d.reasons))
        if not dry_run:
            for group in groups:
                for snap in group["remove"]:
                    await repo.delete_snapshot(snap["id"])
        return groups


def _group(remove: list[SnapshotRecord], keep: list[SnapshotRecord],
           reasons: dict[int, list[str]]) -> dict[str, Any]:
    def fields(r: SnapshotRecord, why: list[str] | None = None) -> dict[str, Any]:
        out = {"id": r.id, "short_id": r.short_id, "time": r.time.isoformat(), "host": r.host,
               "paths": list(r.paths)}
        return out if why is None else {**out, "reasons": why}

    first = (remove or keep or [None])[0]
    return {"host": first.host if first else None,
            "paths": list(first.paths) if first else [],
            "keep": [fields(r, reasons.get(id(r), [])) for r in keep],
            "remove": [fields(r) for r in remove]}


def _report(rep: Reporter, groups: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    """Print the groups; the summary fields (printed by the caller, once)."""
    removed = sum(len(g["remove"]) for g in groups)
    for g in groups:
        rep.emit("group", **g)
        if g["host"] is not None and (g["keep"] or g["remove"]):
            # imported here, not at the top: keeps CLI start-up fast
            from rich.markup import escape

            rep.say(escape(f"snapshots for (host [{g['host']}], paths "
                           f"[{', '.join(g['paths'])}]): keep {len(g['keep'])}, "
                           f"remove {len(g['remove'])}"))
        for snap in g["keep"]:
            rep.say(f"keep   {snap['short_id']} {snap['time'][:19]} {snap['host']} "
                    f"({', '.join(snap['reasons'])})")
        for snap in g["remove"]:
            rep.say(f"{'would remove' if dry_run else 'remove'} {snap['short_id']} "
                    f"{snap['time'][:19]} {snap['host']}")
    verb = "would remove" if dry_run else "removed"
    rep.say(f"{verb} {removed} snapshot(s)")
    return {"dry_run": dry_run, "snapshots_removed": 0 if dry_run else removed,
            "snapshots_to_remove": removed,
            "snapshots_kept": sum(len(g["keep"]) for g in groups)}


@with_options(cache=True)
def forget_cmd(opts: Options,
    snapshots: Annotated[list[str] | None, typer.Argument(
        help="Snapshot ids (or unique prefixes) to remove.")] = None,
    keep_last: int = _keep("last", "the N most recent snapshots"),
    keep_hourly: int = _keep("hourly", "the newest snapshot of each of the last N hours"),
    keep_daily: int = _keep("daily", "the newest snapshot of each of the last N days"),
    keep_weekly: int = _keep("weekly", "the newest snapshot of each of the last N weeks"),
    keep_monthly: int = _keep("monthly", "the newest snapshot of each of the last N months"),
    keep_yearly: int = _keep("yearly", "the newest snapshot of each of the last N years"),
    host: Annotated[str | None, typer.Option(
        "--host", help="Only consider snapshots of this host.")] = None,
    path: PathFilterOpt = None, tag: TagFilterOpt = None,
    keep_tag: Annotated[list[str] | None, typer.Option(
        "--keep-tag", help="Keep every snapshot with this tag (repeatable).",
        metavar="TAG")] = None,
    dry_run: DryRunOpt = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Then drop the packs no snapshot uses (as `p2pbak prune`).")] = False,
    retry_lock: RetryLockOpt = "0",
) -> None:
    """Remove snapshots by id, or all but those a keep policy keeps (per host and paths)."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.retention import Policy
    from p2pbak.datapath.selection import flat_tags

    rep = opts.reporter()
    try:
        policy = Policy(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly,
                        keep_yearly)
    except ValueError as exc:
        raise P2pbakError(str(exc), ExitCode.USAGE) from None
    ids = list(snapshots or [])
    if ids and not policy.empty():
        raise P2pbakError("give snapshot ids or a --keep-* policy, not both", ExitCode.USAGE)
    keep_tags = flat_tags(keep_tag or [])
    if ids and keep_tags:
        raise P2pbakError("give snapshot ids or --keep-tag, not both", ExitCode.USAGE)
    if not ids and policy.empty() and not keep_tags:
        raise P2pbakError("nothing to forget: give snapshot ids or a policy such as "
                          "--keep-last 7 --keep-daily 14", ExitCode.USAGE)
    session = opts.session(retry_lock)
    groups = run(_decide(session, ids, policy, host, dry_run,
                         (abs_paths(path), list(tag or [])), keep_tags))
    fields = _report(rep, groups, dry_run)
    if prune:
        gone = frozenset(snap["id"] for g in groups for snap in g["remove"])
        result = locked(session, lambda: run(prune_repo(session, dry_run, gone,
                                                        command="forget")))
        report_prune(rep, result, fields)
    else:
        rep.summary(**fields)


def register(app: typer.Typer) -> None:
    app.command("forget")(forget_cmd)
