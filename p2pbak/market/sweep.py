"""Many markets per starting distance, both update rules side by side (§5.2's experiment),
and the numerical check of Theorem 2 (one equilibrium, equal buffers)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from p2pbak.market.agents import Economy, make_economy, supply_at
from p2pbak.market.simulate import DEFAULT_TOL, Run, equilibrium, far_start, simulate
from p2pbak.market.update import COORDINATOR, RULES, Params

MAX_ECONOMIES = 5  # trials cycle over this many economies, each with its own directions


@dataclass(frozen=True)
class Setup:
    agents: int = 100
    rounds: int = 100
    seed: int = 0
    noise: float = 0.0
    lag: float = 1.0
    rho: float = 0.5
    tol: float = DEFAULT_TOL
    params: Params = COORDINATOR  # update tuning: the daily job's, hold included
    zero: int | None = None  # a resource nobody supplies at first (simulate's `zero`)


@dataclass(frozen=True)
class SweepRow:
    update: str
    factor: float
    trials: int
    converged: int
    median_rounds: float | None  # over converged trials
    max_rounds: int | None
    negative_prices: int  # trials in which a price went ≤ 0
    within_bound: int  # converged within ⌈|ln F| / ln 2⌉ + 6 rounds
    within_path_bound: int  # within ⌈(|ln F_U| + |ln F_D|) / ln 2⌉ + 6 (path_bound)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def round_bound(factor: float) -> int:
    """The target for the safe rule from a start `factor`× away: full ×2 steps, then 6."""
    return math.ceil(abs(math.log(factor)) / math.log(2.0) - 1e-9) + 6


def path_bound(p_star: tuple[float, float], start: tuple[float, float]) -> int:
    """The target when the two prices can only travel one after the other (a resource
    tied to another by eq. 4): full ×2 steps over both log-distances, then 6."""
    dist = sum(abs(math.log(s / p)) for s, p in zip(start, p_star, strict=True))
    return math.ceil(dist / math.log(2.0) - 1e-9) + 6


def effective_tol(tol: float, noise: float) -> float:
    """A market measured with noise cannot be resolved below it: tol, at least 2·noise."""
    return max(tol, 2.0 * noise)


def trial_starts(setup: Setup, trials: int) -> list[tuple[int, float]]:
    """(economy index, direction angle) per trial, reproducible from the seed (the same
    for every factor)."""
    rng = np.random.default_rng([setup.seed, 1])
    angles = rng.uniform(0.0, 2.0 * math.pi, trials)
    return [(k % min(trials, MAX_ECONOMIES), float(angles[k])) for k in range(trials)]


def sweep(factors: Sequence[float], trials: int, setup: Setup = Setup(),
          rules: Sequence[str] = RULES,
          progress: Callable[[str, float, int, Run], None] | None = None) -> list[SweepRow]:
    """For each factor and rule: `trials` markets started factor× from equilibrium."""
    economies: dict[int, tuple[Economy, tuple[float, float]]] = {}
    rows = []
    starts = trial_starts(setup, trials)
    for factor in factors:
        for rule in rules:
            runs, paths = [], []
            for k, (econ, angle) in enumerate(starts):
                if econ not in economies:
                    e = make_economy(setup.agents, setup.seed + econ, setup.rho)
                    economies[econ] = (e, equilibrium(e))
                e, p_star = economies[econ]
                start = far_start(p_star, factor, angle)
                run = simulate(e, start, setup.rounds, rule, setup.noise, setup.lag,
                               setup.seed + k, effective_tol(setup.tol, setup.noise),
                               setup.params, setup.zero)
                runs.append(run)
                paths.append(path_bound(p_star, start))
                if progress:
                    progress(rule, factor, k, run)
            rows.append(summarise(rule, factor, runs, paths))
    return rows


def summarise(rule: str, factor: float, runs: Sequence[Run],
              paths: Sequence[int] | None = None) -> SweepRow:
    done = [r.converged_round for r in runs if r.converged_round is not None]
    paths = paths if paths is not None else [round_bound(factor)] * len(runs)
    return SweepRow(
        update=rule, factor=factor, trials=len(runs), converged=len(done),
        median_rounds=float(statistics.median(done)) if done else None,
        max_rounds=max(done) if done else None,
        negative_prices=sum(r.negative for r in runs),
        within_bound=sum(1 for r in done if r <= round_bound(factor)),
        within_path_bound=sum(1 for r, b in zip(runs, paths, strict=True)
                              if r.converged_round is not None and r.converged_round <= b))


@dataclass(frozen=True)
class Uniqueness:
    """Theorem 2 checked numerically: equilibria found from several starts."""

    equilibria: list[tuple[float, float]]
    spread: float  # max relative distance between any of them
    buffers: tuple[float, float, float]  # S_X/d_X at the first, equal by Definition 2


def check_uniqueness(e: Economy, starts: Sequence[tuple[float, float]]) -> Uniqueness:
    found = [equilibrium(e, s) for s in starts]
    ref = found[0]
    spread = max(max(abs(a / ref[0] - 1), abs(b / ref[1] - 1)) for a, b in found)
    pa = np.array([1.0, *ref])
    buf = supply_at(e, pa).sum(axis=0) / e.demand
    return Uniqueness(found, spread, (float(buf[0]), float(buf[1]), float(buf[2])))
