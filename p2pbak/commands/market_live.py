"""`p2pbak market simulate --live`: the live market over days (market.live), its figures
and a plot of balances (in days of bill) and prices over the run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from p2pbak.commands.common import save_plot
from p2pbak.commands.output import Reporter
from p2pbak.errors import P2pbakError

if TYPE_CHECKING:
    from p2pbak.market.live import LiveDay, LiveSetup

BOUND_DAYS = 3.0  # largest |balance| the run is expected to end within, in days of bill


def run_live_cmd(out: Reporter, users: int, days: int, lag: float, seed: int,
                 plot: Path | None, show: bool) -> bool:
    """Run, print the figures and plot; True when the run kept its promises (balances
    within BOUND_DAYS at the end, nobody frozen, the ledger zero-sum every day)."""
    if users < 2:
        raise P2pbakError("--users must be at least 2")
    if days < 1:
        raise P2pbakError("--days must be at least 1")
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.live import LiveSetup, days_of_bill

    setup = LiveSetup(users=users, days=days, seed=seed, lag=lag)
    history = _run(setup, show)
    worst = [max(map(abs, days_of_bill(d))) for d in history]
    for d, w in zip(history, worst, strict=True):
        out.status(day=d.day, p_upload=d.p[0], p_download=d.p[1], gap=d.gap,
                   max_abs_balance_days=w, frozen=sum(d.frozen), moved_gb=d.moved,
                   ledger_sum=sum(d.balances) + d.bank)
    zero_sum = all(sum(d.balances) + d.bank == 0 for d in history)
    frozen = sum(any(d.frozen[i] for d in history) for i in range(users))
    ok = worst[-1] <= BOUND_DAYS and frozen == 0 and zero_sum
    last = history[-1]
    out.summary(users=users, days=days, lag=lag, final_max_abs_balance_days=worst[-1],
                peak_max_abs_balance_days=max(worst), users_ever_frozen=frozen,
                ledger_zero_sum_every_day=zero_sum, moved_gb=sum(d.moved for d in history),
                final_prices={"space": 1.0, "upload": last.p[0], "download": last.p[1]},
                final_gap=last.gap, ok=ok)
    out.say(f"{users} users, {days} days, {lag:.0%} move their sliders a day")
    out.say(f"largest |balance| on day {days}: {worst[-1]:.3f} days of bill "
            f"(at most {BOUND_DAYS:g}); peak over the run {max(worst):.3f}")
    out.say(f"users ever frozen: {frozen}; ledger sums to 0 every day: {zero_sum}")
    out.say(f"stored data moved: {sum(d.moved for d in history):.3g} effective GB; "
            f"final p = (1, {last.p[0]:.4g}, {last.p[1]:.4g}), max relative |g| "
            f"{last.gap:.2g}")
    if plot is not None:
        plot_live(history, plot, setup)
        out.say(f"plot written to {plot}")
    return ok


def _run(setup: LiveSetup, show: bool) -> list[LiveDay]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.live import live_day, open_market

    state = open_market(setup)
    if not show:
        return [live_day(state, k, setup) for k in range(setup.days)]
    # imported here, not at the top: keeps CLI start-up fast
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("days", total=setup.days)
        out = []
        for k in range(setup.days):
            out.append(live_day(state, k, setup))
            bar.advance(task)
        return out


def plot_live(history: list[LiveDay], path: Path, setup: LiveSetup) -> None:
    """Every user's balance in days of its bill, and p_U, p_D, over the days."""
    # imported here, not at the top: keeps CLI start-up fast
    import matplotlib

    matplotlib.use("Agg")
    # imported here, not at the top: keeps CLI start-up fast
    import matplotlib.pyplot as plt

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.market.live import days_of_bill

    days = [d.day + 1 for d in history]
    fig, (ax_b, ax_p) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    per_day = [days_of_bill(d) for d in history]
    for i in range(setup.users):
        ax_b.plot(days, [b[i] for b in per_day], lw=0.9)
    ax_b.axhspan(-BOUND_DAYS, BOUND_DAYS, color="green", alpha=0.08)
    ax_b.set_ylabel("balance (days of own bill)")
    ax_b.set_title(f"live market: {setup.users} users, {setup.lag:.0%} move sliders a day")
    ax_p.plot(days, [d.p[0] for d in history], label="p_U")
    ax_p.plot(days, [d.p[1] for d in history], "--", label="p_D")
    ax_p.set_yscale("log")
    ax_p.set_ylabel("price (p_S = 1)")
    ax_p.set_xlabel("day")
    ax_p.legend(fontsize=8)
    save_plot(fig, path)
