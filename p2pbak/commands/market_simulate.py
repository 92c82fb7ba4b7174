"""`p2pbak market simulate`: one simulated market (§5.2) under a price update rule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from p2pbak.commands import groups
from p2pbak.commands.common import save_plot
from p2pbak.commands.market_live import run_live_cmd
from p2pbak.commands.output import Reporter
from p2pbak.commands.sim_deps import require_sim
from p2pbak.errors import P2pbakError

if TYPE_CHECKING:
    from p2pbak.market.simulate import Run


def check_market_options(agents: int, rounds: int, noise: float, lag: float,
                         rho: float) -> None:
    """One-line errors for options the market cannot run with (shared with `sweep`)."""
    if agents < 2:
        raise P2pbakError("--agents must be at least 2")
    if rounds < 1:
        raise P2pbakError("--rounds must be at least 1")
    if not 0 <= noise < 1:
        raise P2pbakError("--noise must be in [0, 1), e.g. 0.01 for 1%")
    if not 0 < lag <= 1:
        raise P2pbakError("--lag (share of users re-optimising per round) must be in (0, 1]")
    if not -10 <= rho < 1:
        raise P2pbakError("--rho must be in [-10, 1) (0..1 satisfies Theorem 2)")


def plot_runs(runs: dict[str, Run], p_star: tuple[float, float], path: Path,
              title: str) -> None:
    """Prices (relative to the equilibrium) and max relative |g| per round, one line per run."""
    # imported here, not at the top: keeps CLI start-up fast
    import matplotlib

    matplotlib.use("Agg")
    # imported here, not at the top: keeps CLI start-up fast
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_g) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for label, run in runs.items():
        rounds = range(len(run.prices))
        for i, (name, style) in enumerate((("p_U", "-"), ("p_D", "--"))):
            rel = [p[i] / p_star[i] if p[i] > 0 else math.nan for p in run.prices]
            ax_p.plot(rounds, rel, style, marker=".", label=f"{label}: {name}/{name}*")
        ax_g.plot(range(len(run.gap)), run.gap, marker="o" if label == "paper" else ".",
                  fillstyle="none", label=label)
        if run.negative or run.diverged:
            what = "next price ≤ 0" if run.negative else "prices ran away"
            ax_g.annotate(f"{label}: {what}", (len(run.gap) - 1, run.gap[-1]),
                          textcoords="offset points", xytext=(-110, -30), fontsize=8,
                          arrowprops={"arrowstyle": "->"})
    ax_p.set_yscale("log")
    ax_p.axhline(1.0, color="grey", lw=0.8)
    ax_p.set_ylabel("price / equilibrium price")
    ax_p.legend(fontsize=8)
    ax_p.set_title(title)
    ax_g.set_yscale("log")
    ax_g.set_ylabel("max |g_X| / (d_X/d_S)")
    ax_g.set_xlabel("round (day)")
    ax_g.legend(fontsize=8)
    save_plot(fig, path)


def simulate_cmd(
    agents: int = typer.Option(100, "--agents", "-n", help="Simulated users."),
    rounds: int = typer.Option(100, "--rounds", "-r", help="Most price updates (days)."),
    start_factor: float = typer.Option(10.0, "--start-factor", "-f",
                                       help="Start this many times away from equilibrium."),
    angle: float | None = typer.Option(None, "--angle",
                                       help="Direction of the start in the (ln p_U, ln p_D) "
                                            "plane, radians (default: drawn from the seed)."),
    rule: str = typer.Option("safe", "--update", "-u", help="Price update: paper or safe."),
    noise: float = typer.Option(0.0, "--noise", help="Relative noise on measured S and d."),
    lag: float | None = typer.Option(None, "--lag",
                                     help="Share of users who re-optimise each round "
                                          "(0..1]; default 1, with --live 0.3."),
    rho: float = typer.Option(0.5, "--rho", help="CES parameter ρ of every user (< 1)."),
    tol: float = typer.Option(1e-3, "--tol", help="Converged when max relative |g| ≤ this."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed (economy, start, noise)."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw prices and |g| to a PNG."),
    live: bool = typer.Option(False, "--live",
                              help="The live market over --days: allocation, moves, "
                                   "freezing, the bank and the daily price update."),
    days: int = typer.Option(365, "--days", help="Days of the --live market."),
    users: int = typer.Option(12, "--users", help="Users of the --live market."),
    json: bool = typer.Option(False, "--json", help="JSON lines: one per round, a summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Run one market of CES users from a start F× away from the buffer equilibrium
    (or, with --live, the running market over days; exit 1 if its balances drift)."""
    out = Reporter(json=json, quiet=quiet)
    require_sim("market simulate")
    if live:
        share = 0.3 if lag is None else lag
        if not 0 < share <= 1:
            raise P2pbakError("--lag (share of users moving sliders a day) must be in (0, 1]")
        if not run_live_cmd(out, users, days, share, seed, plot, not (json or quiet)):
            raise typer.Exit(1)
        return
    lag = 1.0 if lag is None else lag
    check_market_options(agents, rounds, noise, lag, rho)
    if rule not in ("paper", "safe"):
        raise P2pbakError(f"unknown --update {rule!r}: choose paper or safe")
    if not start_factor >= 1 or not math.isfinite(start_factor):
        raise P2pbakError("--start-factor must be a number >= 1")
    if not 0 < tol < 1:
        raise P2pbakError("--tol must be in (0, 1)")
    # imported here, not at the top: keeps CLI start-up fast
    import numpy as np

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.agents import make_economy
    from p2pbak.market.simulate import equilibrium, far_start, simulate
    from p2pbak.market.sweep import effective_tol, round_bound

    economy = make_economy(agents, seed, rho)
    try:
        p_star = equilibrium(economy)
    except ValueError:
        raise P2pbakError(f"this economy ({agents} agents, seed {seed}, rho {rho}) has no "
                          "equilibrium the solver can find: try another --seed or more "
                          "--agents") from None
    if angle is None:
        angle = float(np.random.default_rng([seed, 2]).uniform(0, 2 * math.pi))
    start = far_start(p_star, start_factor, angle)
    tol = effective_tol(tol, noise)
    run = simulate(economy, start, rounds, rule, noise, lag, seed, tol)
    for t, (p, gap, g) in enumerate(zip(run.prices, run.gap, run.g, strict=False)):
        out.status(round=t, p_upload=p[0], p_download=p[1], g=list(g), gap=gap)
    _report(out, run, p_star, start, start_factor, rule, tol, round_bound(start_factor))
    if plot is not None:
        plot_runs({rule: run}, p_star, plot,
                  f"{rule} rule, {agents} users, start {start_factor:g}× away")
        out.say(f"plot written to {plot}")


def _report(out: Reporter, run: Run, p_star: tuple[float, float],
            start: tuple[float, float], factor: float, rule: str, tol: float,
            bound: int) -> None:
    out.summary(update=rule, converged=run.converged, rounds=run.converged_round,
                rounds_run=len(run.gap) - 1, negative_prices=run.negative,
                diverged=run.diverged, lagging_detected=run.lagging,
                equilibrium={"space": 1.0, "upload": p_star[0], "download": p_star[1]},
                start={"space": 1.0, "upload": start[0], "download": start[1]},
                final={"space": 1.0, "upload": run.final[0], "download": run.final[1]},
                gap=run.gap[-1], tol=tol, buffers=list(run.buffers or ()),
                round_bound=bound)
    out.say(f"equilibrium  p = (1, {p_star[0]:.6g}, {p_star[1]:.6g})")
    out.say(f"start        p = (1, {start[0]:.6g}, {start[1]:.6g})  ({factor:g}× away)")
    if run.converged:
        out.say(f"[green]{rule}: converged in {run.converged_round} rounds[/green] "
                f"(max relative |g| {run.gap[-1]:.2g} ≤ {tol:g}; target ≤ {bound})")
    else:
        why = ("a price went non-positive" if run.negative else
               "prices ran away" if run.diverged else f"max relative |g| {run.gap[-1]:.2g}")
        out.say(f"[red]{rule}: did not converge[/red] after {len(run.gap) - 1} rounds ({why})")
    out.say(f"final        p = (1, {run.final[0]:.6g}, {run.final[1]:.6g})")
    if run.buffers:
        b = run.buffers
        out.say(f"buffers S/d: space {b[0]:.4g}, upload {b[1]:.4g}, download {b[2]:.4g}")
    if run.lagging:
        out.say("the market was detected as lagging: damped steps were used")


def register(app: typer.Typer) -> None:
    groups.market_app.command("simulate")(simulate_cmd)
