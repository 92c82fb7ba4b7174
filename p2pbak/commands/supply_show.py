"""`p2pbak supply show`: what the caps buy, in the hidden market's terms (§3.1)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.caps import cap_text, format_in, unit_system
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.supply_set import caps_dict
from p2pbak.config import Supply, load

PricesOpt = Annotated[bool, typer.Option(
    "--prices", help="Also show today's prices and this account's balance.")]
NAMES = (("space", False), ("upload", True), ("download", True))


async def _quote(cfg: Any) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(cfg) as coord:
        return await coord.supply_quote(cfg.supply)


def _region_lines(q: dict[str, Any], system: str) -> list[str]:
    out = []
    for name, rate in NAMES:
        cap, region = q["caps"][name], int(q["regions"][name])
        where = "beyond it: lower it or raise the others" if cap is None or cap > region \
            else "inside"
        out.append(f"  {name:<9} counts up to {cap_text(region, rate, system)} "
                   f"(yours: {cap_text(cap, rate, system)}, {where})")
    return out


def _say(rep: Any, q: dict[str, Any], prices: bool) -> None:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.coordinator.accounts import credits

    caps = q["caps"]
    system = unit_system(Supply(**caps))  # the user's: 50GB in, GB out
    rep.say("lending: " + ", ".join(f"{n} {cap_text(caps[n], r, system)}" for n, r in NAMES))
    rep.say(f"backup space in use: {format_in(int(q['in_use_bytes']), system)}")
    rep.say("additional backup space available: "
            f"{format_in(int(q['available_bytes']), system)}")
    if caps["space"] == 0:
        rep.say("  (bought with bandwidth alone: this machine stores nothing for others, and "
                "bandwidth counts only within its ratio to the space lent, §3.1)")
    rep.say("where raising a cap stops adding backup space:")
    for line in _region_lines(q, system):
        rep.say(line)
    rep.say(f"this machine's availability: {float(q['availability']):.0%}"
            + ("" if q["peer_known"] else " (assumed: its peer agent has not run yet)"))
    if prices:
        p, acct = q["prices"]["p"], q["account"]
        rep.say(f"prices (space = 1): upload {p['upload']:.4g}, download {p['download']:.4g}")
        rep.say(f"balance: {credits(int(acct['balance']))} credits ({acct['health']})")


@with_options(quiet=False, password=False)
def supply_show(opts: Options, prices: PricesOpt = False) -> None:
    """Show the caps, backup space in use and available, and each cap's effective region."""
    rep = opts.reporter()
    cfg = load(opts.config)
    q = run(_quote(cfg))
    fields = {k: q[k] for k in ("in_use_bytes", "available_bytes", "total_bytes", "regions",
                                "availability", "peer_known", "mix", "own_mix", "market")}
    if prices:
        fields.update(prices=q["prices"], account=q["account"])
    rep.summary(caps=caps_dict(cfg.supply), **fields)
    _say(rep, q, prices)


def register(app: typer.Typer) -> None:
    groups.supply_app.command("show")(supply_show)
