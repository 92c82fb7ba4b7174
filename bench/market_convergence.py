"""Convergence of the price update rules on simulated CES markets (paper §5.2).

Prints, per starting distance F from the buffer equilibrium: the paper's Definition 4
against the safe rule (convergence rate, median/max rounds, max rounds over the target
⌈|ln F| / ln 2⌉ + 6, runs within it, runs within the path target ⌈(|ln F_U| + |ln F_D|) /
ln 2⌉ + 6, negative prices); then the safe rule with 1% measurement noise and
with only 30% of users re-optimising per round; then markets whose upload supply starts at
0 (settled, and lagging); all with the coordinator's hold logic (update.COORDINATOR: an
answer judged against the measured noise); then a market that never answers (users
keep their sliders: S and d fixed) under the hold; then Theorem 2 checked numerically; and
saves a plot of one far start under both rules. Last, the live market (market.live) over
--live-days days with daily audits and the proven-supply rule, without and with one user
declaring 1000x its caps and raising them 2% a day: the largest |balance| in days of bill
on the last day, and how far the liar moved the prices (ratios, no timing).

    /work/venv/bin/python bench/market_convergence.py [--trials 20] [--agents 100]
    /work/venv/bin/python bench/market_convergence.py --only-live [--live-days 365]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pbak.market.agents import make_economy
from p2pbak.market.simulate import equilibrium, far_start, simulate
from p2pbak.market.sweep import (
    Setup,
    SweepRow,
    check_uniqueness,
    round_bound,
    sweep,
)

FACTORS = (2.0, 10.0, 100.0, 1e4)
PLOT = Path(__file__).resolve().parent.parent / "docs" / "market_far_start.png"


def _job(args: tuple[float, str, int, Setup]) -> SweepRow:
    factor, rule, trials, setup = args
    return sweep([factor], trials, setup, rules=[rule])[0]


def _table(title: str, rows: list[SweepRow]) -> None:
    print(f"\n{title}")
    print(f"{'F':>7} {'rule':>5} {'converged':>10} {'median':>7} {'max':>5} "
          f"{'target':>6} {'max/target':>10} {'in target':>9} {'in path':>7} {'negative':>8}")
    for r in rows:
        bound = round_bound(r.factor)
        ratio = "-" if r.max_rounds is None else f"{r.max_rounds / bound:.2f}"
        print(f"{r.factor:>7g} {r.update:>5} {r.converged:>4}/{r.trials:<5} "
              f"{'-' if r.median_rounds is None else f'{r.median_rounds:g}':>7} "
              f"{'-' if r.max_rounds is None else r.max_rounds:>5} {bound:>6} "
              f"{ratio:>10} {r.within_bound:>9} {r.within_path_bound:>7} "
              f"{r.negative_prices:>8}")


def _grid(pool: ProcessPoolExecutor, trials: int, setup: Setup,
          rules: tuple[str, ...]) -> list[SweepRow]:
    jobs = [(f, rule, trials, setup) for f in FACTORS for rule in rules]
    return list(pool.map(_job, jobs))


def _frozen(agents: int, days: int = 60) -> None:
    import math

    import numpy as np

    from p2pbak.market.agents import supply_at
    from p2pbak.market.resources import Resources
    from p2pbak.market.update import update

    print(f"\nA market that never answers: S and d fixed for {days} intervals, 10x start")
    e = make_economy(agents, seed=0)
    p_star = equilibrium(e)
    from p2pbak.market.update import COORDINATOR

    for rule in ("paper", "safe"):
        start = Resources(1.0, *far_start(p_star, 10.0, 0.4))
        s = Resources(*map(float, supply_at(e, np.array(start.as_tuple())).sum(axis=0)))
        d = Resources(*map(float, e.demand))
        p, state, moves, far = start, None, 0, 0.0
        for _ in range(days):
            new, state = update(p, s, d, state, rule, COORDINATOR)
            moves += new != p
            p = new
            far = max(far, abs(math.log(p.upload / start.upload)),
                      abs(math.log(p.download / start.download)))
        print(f"  {rule}: {moves} moves, farthest from the start x{math.exp(far):.3f}")


def _uniqueness(agents: int) -> None:
    print("\nTheorem 2: equilibria from 5 starts (up to 1000x away), per rho")
    for rho in (0.0, 0.5, 0.9, -1.0):
        e = make_economy(agents, seed=21, rho=rho)
        p0 = equilibrium(e)
        starts = [far_start(p0, 1000.0, a) for a in (0.2, 1.5, 2.9, 4.4, 5.8)]
        u = check_uniqueness(e, starts)
        spread_b = max(u.buffers) / min(u.buffers) - 1
        note = "" if 0 <= rho < 1 else "  (outside the theorem)"
        print(f"  rho {rho:>4}: p* = (1, {u.equilibria[0][0]:.5g}, {u.equilibria[0][1]:.5g}), "
              f"spread between starts {u.spread:.1e}, buffers S/d "
              f"{u.buffers[0]:.4f}/{u.buffers[1]:.4f}/{u.buffers[2]:.4f} "
              f"(unequal by {spread_b:.1e}){note}")


def _plot(agents: int) -> None:
    from p2pbak.commands.market_simulate import plot_runs

    e = make_economy(agents, seed=0)
    p_star = equilibrium(e)
    start = far_start(p_star, 1e4, 0.4)
    runs = {rule: simulate(e, start, 60, rule) for rule in ("paper", "safe")}
    PLOT.parent.mkdir(exist_ok=True)
    plot_runs(runs, p_star, PLOT, f"{agents} CES users, start 10^4× from equilibrium")
    print(f"\nplot of a 10^4x start, both rules: {PLOT}")
    for rule, run in runs.items():
        fate = (f"converged in {run.converged_round} rounds" if run.converged else
                "a price went non-positive" if run.negative else
                "prices ran away" if run.diverged else "no convergence in 60 rounds")
        print(f"  {rule}: {fate} after {len(run.gap) - 1} updates")


def _live(days: int) -> None:
    import math

    from p2pbak.market.live import LiveSetup, days_of_bill, run_live

    print(f"\nLive market, {days} days, 12 users, daily audits, supply = proven + headroom")
    ends = {}
    for liars in (0, 1):
        history = run_live(LiveSetup(days=days, liars=liars))
        worst = [max(map(abs, days_of_bill(d))) for d in history]
        last = history[-1]
        ends[liars] = last.p
        print(f"  {liars} liar(s): largest |balance| at day {days}: {worst[-1]:.3f} days of "
              f"bill (peak {max(worst):.2f}); p = ({last.p[0]:.4g}, {last.p[1]:.4g}); "
              f"counted S_S {last.supply[0]:.4g} of {last.declared[0]:.4g} declared; "
              f"frozen ever: {any(any(d.frozen) for d in history)}")
    moved = max(abs(math.log(a / b)) for a, b in zip(ends[1], ends[0], strict=True))
    print(f"  the liar moved the day-{days} prices by x{math.exp(moved):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--live-days", type=int, default=365)
    ap.add_argument("--only-live", action="store_true", help="only the live market")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.only_live:
        _live(a.live_days)
        return
    base = Setup(agents=a.agents, rounds=100)
    with ProcessPoolExecutor(a.jobs) as pool:
        _table(f"Settled market ({a.trials} starts per row, {a.agents} users, rho 0.5)",
               _grid(pool, a.trials, base, ("paper", "safe")))
        noisy = Setup(agents=a.agents, rounds=100, noise=0.01)
        _table("1% noise on measured S and d (converged = within 2% of equilibrium)",
               _grid(pool, a.trials, noisy, ("safe",)))
        lagging = Setup(agents=a.agents, rounds=100, lag=0.3)
        _table("Lagging market: 30% of users re-optimise per round (100 rounds at most)",
               _grid(pool, a.trials, lagging, ("paper", "safe")))
        zero = Setup(agents=a.agents, rounds=100, zero=1)
        _table("Upload supply starts at 0 (nobody has set an upload cap yet)",
               _grid(pool, a.trials, zero, ("safe",)))
        zero_lag = Setup(agents=a.agents, rounds=100, zero=1, lag=0.3)
        _table("Upload supply starts at 0, 30% of users re-optimise per round",
               _grid(pool, a.trials, zero_lag, ("safe",)))
    _frozen(a.agents)
    _uniqueness(a.agents)
    _plot(a.agents)
    _live(a.live_days)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
