"""`p2pbak prune`: drop the packs no snapshot uses; their suppliers delete the fragments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    NoCacheOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    QuietOpt,
    Session,
    open_session,
    reporter,
    run,
    unlocked,
)
from p2pbak.commands.output import Reporter

if TYPE_CHECKING:
    from p2pbak.datapath.prune import PruneResult

DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", "-n", help="Show what would be dropped; drop nothing.")]


async def prune_repo(session: Session, dry_run: bool,
                     forgotten: frozenset[str] = frozenset()) -> PruneResult:
    from p2pbak.datapath.prune import prune

    async with unlocked(session, lock="shared" if dry_run else "exclusive") as (repo, master):
        return await prune(repo, master, dry_run=dry_run, forgotten=forgotten)


def locked(session: Session, fn: Any) -> Any:
    """Run `fn()` under this machine's lock: a backup running here must not lose the packs
    it has committed before its snapshot lists them. (Backups of the user's other machines
    are kept off by the coordinator's repository lock, taken exclusively in `prune_repo`.)"""
    from p2pbak.lock import machine_lock

    with machine_lock(session.config.cache, command="prune",
                      hint="wait for it to finish and run prune again"):
        return fn()


def report(rep: Reporter, result: PruneResult, extra: dict[str, Any] | None = None) -> None:
    """The summary line (with `extra` fields, e.g. forget's) and the human lines."""
    from p2pbak.config import format_size

    plan = result.plan
    rep.summary(**{**(extra or {}), "dry_run": result.dry_run,
                   "packs_to_drop": len(plan.drop), "bytes_to_drop": plan.drop_bytes,
                   "packs_kept": plan.keep, "bytes_kept": plan.kept_bytes,
                   "unused_bytes_kept": plan.unused_in_kept,
                   "packs_dropped": result.packs_dropped, "bytes_freed": result.bytes_freed,
                   "fragment_bytes_freed": result.fragment_bytes_freed,
                   "indexes_rewritten": result.indexes_rewritten})
    if result.dry_run:
        rep.say(f"would drop {len(plan.drop)} packs ({format_size(plan.drop_bytes)}); "
                f"{plan.keep} packs ({format_size(plan.kept_bytes)}) stay")
        return
    rep.say(f"dropped {result.packs_dropped} packs: {format_size(result.bytes_freed)} freed "
            f"({format_size(result.fragment_bytes_freed)} of fragments on suppliers, deleted "
            f"at their next heartbeat); {plan.keep} packs ({format_size(plan.kept_bytes)}) "
            "stay")
    if plan.unused_in_kept:
        rep.say(f"{format_size(plan.unused_in_kept)} unused inside packs still in use")


def prune_cmd(dry_run: DryRunOpt = False, json: JsonOpt = False, quiet: QuietOpt = False,
              config: ConfigOpt = None, password_file: PasswordFileOpt = None,
              password_command: PasswordCommandOpt = None,
              no_cache: NoCacheOpt = False) -> None:
    """Drop packs no snapshot uses; the suppliers delete their fragments."""
    rep = reporter(json, quiet)
    session = open_session(config, password_file, password_command, no_cache)
    report(rep, locked(session, lambda: run(prune_repo(session, dry_run))))


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
