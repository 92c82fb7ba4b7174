"""`p2pbak market prices`: the price history the daily price job wrote (§5.1)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.config import load

LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=10_000,
                                       help="Show the last N price updates.")]


async def _prices(cfg: Any, limit: int) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(cfg) as coord:
        return await coord.prices(limit)


def _line(row: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(row["at"])))
    g = row.get("g")
    gap = "g = (—)" if g is None else f"g = ({g[0]:+.3g}, {g[1]:+.3g})"
    note = f"  {row['note']}" if row.get("note") else ""
    o = row.get("overheads")  # measured erasure factor n/k behind q (§2.2)
    factor = f"  factor {float(o['factor']):.3g}" if o else ""
    return (f"{when}  upload {float(row['p_upload']):.4g}  download "
            f"{float(row['p_download']):.4g}  {gap}{factor}{note}")


@with_options(quiet=False, password=False)
def market_prices(opts: Options, limit: LimitOpt = 30) -> None:
    """Show resource prices over time (space = 1) and the market's g(p) at each update."""
    rep = opts.reporter()
    answer = run(_prices(load(opts.config), limit))
    history = list(answer.get("history", []))
    rep.summary(current=answer.get("current"), history=history)
    if not history:
        rep.say("no price updates yet: the coordinator writes one per price interval")
    for row in history:
        rep.say(_line(row))


def register(app: typer.Typer) -> None:
    groups.market_app.command("prices")(market_prices)
