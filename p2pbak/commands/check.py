"""`p2pbak check`: verify snapshots, index and placements; `--read-data` reads every pack,
`--read-data-subset` the packs it selects (restic's n/m or N%)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from p2pbak.client.session import Session, unlocked
from p2pbak.commands.common import (
    RetryLockOpt,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter
from p2pbak.errors import ExitCode

if TYPE_CHECKING:
    from p2pbak.datapath.check import CheckResult, Subset


async def _check(session: Session, read_data: bool, rep: Reporter,
                 subset: Subset | None = None) -> CheckResult:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.check import check

    def progress(done: int, total: int) -> None:
        rep.status(packs_read=done, total_packs=total,
                   percent_done=round(done / total, 4) if total else 1.0)

    async with unlocked(session, "shared", "check") as (repo, master):
        if read_data:  # a network repository then reads every fragment, not k of n
            repo.verify_every_fragment = True  # type: ignore[attr-defined]
        result = await check(repo, master, read_data, progress, subset)
        result.problems += getattr(repo, "bad_holders", [])
        return result


@with_options(cache=True)
def check_cmd(opts: Options, read_data: Annotated[bool, typer.Option(
                  "--read-data", help="Also fetch every fragment of every pack, verify every blob, "
                  "and report holders that answer wrong to the coordinator.")]
              = False,
              read_data_subset: Annotated[str, typer.Option(
                  "--read-data-subset", metavar="n/m|N%",
                  help="Like --read-data, for a subset of the packs: the n-th of m groups "
                  "(by pack id; 1/m to m/m together read every pack) or a random N%.")]
              = "", retry_lock: RetryLockOpt = "0") -> None:
    """Check that every snapshot can be restored (exit 1 lists the problems)."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath.check import parse_subset

    subset = parse_subset(read_data_subset) if read_data_subset else None
    read_data = read_data or subset is not None
    rep = opts.reporter()
    session = opts.session(retry_lock)
    result = run(_check(session, read_data, rep, subset))
    for problem in result.problems:
        if rep.json:
            rep.emit("error", message=problem, fatal=False)
        else:
            rep.err.print(f"p2pbak: problem: {problem}", markup=False)
    rep.summary(snapshots=result.snapshots, trees=result.trees, blobs=result.blobs,
                packs=result.packs, packs_read=result.packs_read,
                unindexed_packs=result.unindexed_packs, problems=len(result.problems),
                read_data=read_data, read_data_subset=read_data_subset or None)
    read = f", {result.packs_read} packs read and verified" if read_data else ""
    rep.say(f"{result.snapshots} snapshots, {result.trees} trees, {result.blobs} blobs, "
            f"{result.packs} packs{read}")
    if result.unindexed_packs:
        rep.say(f"{result.unindexed_packs} packs are listed in no index (left by an "
                "interrupted backup): `p2pbak prune` drops them")
    if result.problems:
        rep.say(f"{len(result.problems)} problem(s) found")
        raise typer.Exit(int(ExitCode.FAILED))
    rep.say("no problems found")


def register(app: typer.Typer) -> None:
    app.command("check")(check_cmd)
