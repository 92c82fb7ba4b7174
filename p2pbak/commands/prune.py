"""`p2pbak prune`: drop the packs no snapshot uses; their suppliers delete the fragments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    RetryLockOpt,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter
from p2pbak.config import format_size
from p2pbak.errors import ExitCode, P2pbakError

if TYPE_CHECKING:
    from p2pbak.datapath.prune import PruneResult

DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", "-n", help="Show what would be dropped; drop nothing.")]


MaxUnusedOpt = Annotated[str, typer.Option(
    "--max-unused", help="Repack packs until at most this share of the kept bytes is unused "
    "(e.g. 5%, restic's default); `unlimited`: never repack.", metavar="PERCENT")]


def parse_max_unused(text: str) -> float | None:
    """'5%' → 0.05; 'unlimited' → None (no repacking)."""

    if text.strip().lower() == "unlimited":
        return None
    try:
        value = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        value = -1.0
    if not text.strip().endswith("%") or not 0 <= value < 1:
        raise P2pbakError(f"cannot read --max-unused {text!r}: write a share like 5% "
                          "(0% to 99%) or `unlimited`", ExitCode.USAGE)
    return value


async def prune_repo(session: Session, dry_run: bool,
                     forgotten: frozenset[str] = frozenset(),
                     max_unused: float | None = None, command: str = "prune") -> PruneResult:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.prune import prune

    lock = "shared" if dry_run else "exclusive"
    async with unlocked(session, lock, command) as (repo, master):
        return await prune(repo, master, dry_run=dry_run, forgotten=forgotten,
                           max_unused=max_unused)


def locked(session: Session, fn: Any) -> Any:
    """Run `fn()` under this machine's lock: a backup running here must not lose the packs
    it has committed before its snapshot lists them. (Backups of the user's other machines
    are kept off by the coordinator's repository lock, taken exclusively in `prune_repo`.)"""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.store.machinelock import machine_lock

    with machine_lock(session.config.cache, command="prune", retry=session.retry_lock,
                      hint="wait for it to finish, or wait for it with --retry-lock 5m"):
        return fn()


def report(rep: Reporter, result: PruneResult, extra: dict[str, Any] | None = None) -> None:
    """The summary line (with `extra` fields, e.g. forget's) and the human lines."""
    plan = result.plan
    rep.summary(**{**(extra or {}), "dry_run": result.dry_run,
                   "packs_to_drop": len(plan.drop), "bytes_to_drop": plan.drop_bytes,
                   "packs_kept": plan.keep, "bytes_kept": plan.kept_bytes,
                   "unused_bytes_kept": plan.unused_in_kept,
                   "packs_dropped": result.packs_dropped, "bytes_freed": result.bytes_freed,
                   "fragment_bytes_freed": result.fragment_bytes_freed,
                   "indexes_rewritten": result.indexes_rewritten,
                   "packs_to_repack": len(plan.repack),
                   "unused_bytes_repacked": plan.repack_unused,
                   "packs_written": result.packs_written,
                   "bytes_written": result.bytes_written})
    if plan.repack:
        rep.say(f"{'would repack' if result.dry_run else 'repacked'} {len(plan.repack)} packs "
                f"({format_size(plan.repack_unused)} unused in them)"
                + ("" if result.dry_run else f" into {result.packs_written} new packs "
                   f"({format_size(result.bytes_written)})"))
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


@with_options(cache=True)
def prune_cmd(opts: Options, dry_run: DryRunOpt = False,
              max_unused: MaxUnusedOpt = "unlimited", retry_lock: RetryLockOpt = "0") -> None:
    """Drop packs no snapshot uses (and, with --max-unused, repack mostly-unused ones); the
    suppliers delete their fragments."""
    rep = opts.reporter()
    limit = parse_max_unused(max_unused)
    session = opts.session(retry_lock)
    report(rep, locked(session, lambda: run(prune_repo(session, dry_run, max_unused=limit))))


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
