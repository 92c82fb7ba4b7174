"""`p2pbak market sweep`: convergence of both price update rules from many starts (§5.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from p2pbak.commands import groups
from p2pbak.commands.market_simulate import check_market_options
from p2pbak.commands.output import Reporter
from p2pbak.commands.sim_deps import require_sim
from p2pbak.errors import P2pbakError

if TYPE_CHECKING:
    from p2pbak.market.sweep import Setup, SweepRow


def parse_factors(text: str) -> list[float]:
    try:
        factors = [float(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise P2pbakError(f"--factors must be numbers separated by commas, got {text!r}") \
            from None
    if not factors or min(factors) < 1:
        raise P2pbakError("--factors must list starting distances >= 1, e.g. 2,10,100")
    return factors


def sweep_cmd(
    trials: int = typer.Option(20, "--trials", "-t", help="Markets per factor and rule."),
    factors: str = typer.Option("2,10,100,10000", "--factors",
                                help="Starting distances from equilibrium, comma-separated."),
    agents: int = typer.Option(100, "--agents", "-n", help="Simulated users per market."),
    rounds: int = typer.Option(100, "--rounds", "-r", help="Most price updates per market."),
    noise: float = typer.Option(0.0, "--noise", help="Relative noise on measured S and d."),
    lag: float = typer.Option(1.0, "--lag", help="Share of users re-optimising per round."),
    rho: float = typer.Option(0.5, "--rho", help="CES parameter ρ of every user (< 1)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed."),
    json: bool = typer.Option(False, "--json", help="One JSON object per (rule, factor)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Convergence rate and rounds of the paper's and the safe price update, side by side."""
    out = Reporter(json=json, quiet=quiet)
    require_sim("market sweep")
    check_market_options(agents, rounds, noise, lag, rho)
    if trials < 1:
        raise P2pbakError("--trials must be at least 1")
    wanted = parse_factors(factors)
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.sweep import Setup, round_bound

    setup = Setup(agents=agents, rounds=rounds, seed=seed, noise=noise, lag=lag, rho=rho)
    rows = _run(wanted, trials, setup, show=not (json or quiet))
    for row in rows:
        out.summary(**row.to_dict(), round_bound=round_bound(row.factor))
    if json or quiet:
        return
    # imported here, not at the top: keeps CLI start-up fast
    from rich.table import Table

    table = Table(title=f"{trials} markets of {agents} users per row "
                        f"(noise {noise:g}, share re-optimising {lag:g})",
                  caption="rounds to convergence; in target: ≤ ⌈log2 F⌉+6, "
                          "in path: ≤ ⌈log2 F_U + log2 F_D⌉+6")
    for col in ("F", "rule", "converged", "median", "max", "in target", "in path",
                "negative"):
        table.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: (r.factor, r.update)):
        table.add_row(f"{r.factor:g}", r.update, f"{r.converged}/{r.trials}",
                      "-" if r.median_rounds is None else f"{r.median_rounds:g}",
                      "-" if r.max_rounds is None else str(r.max_rounds),
                      f"{r.within_bound}/{r.trials}", f"{r.within_path_bound}/{r.trials}",
                      str(r.negative_prices))
    out.out.print(table)


def _run(factors: list[float], trials: int, setup: Setup, show: bool) -> list[SweepRow]:
    """The sweep, with a progress bar for people."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.sweep import sweep

    if not show:
        return sweep(factors, trials, setup)
    # imported here, not at the top: keeps CLI start-up fast
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("markets", total=len(factors) * trials * 2)
        return sweep(factors, trials, setup,
                     progress=lambda rule, factor, k, run: bar.advance(task))


def register(app: typer.Typer) -> None:
    groups.market_app.command("sweep")(sweep_cmd)
