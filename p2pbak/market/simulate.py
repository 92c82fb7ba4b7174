"""The market simulator (§5.2): agents re-optimise each round at the current prices, the
price update (the very `update.update` the coordinator's daily job calls) moves p.

Options: multiplicative noise on the S and d the update sees (the truth decides
convergence), and lag (only a share of agents re-optimise each round; the rest keep
their sliders), and a resource nobody supplies at the start (`zero`: its column of every
agent's supply is 0 until the agent re-optimises)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from p2pbak.market.agents import Economy, subset, supply_at
from p2pbak.market.equilibrium import g as g_of
from p2pbak.market.equilibrium import h as h_of
from p2pbak.market.equilibrium import relative_gap
from p2pbak.market.resources import Resources
from p2pbak.market.update import Params, UpdateState, update

DEFAULT_TOL = 1e-3
PRICE_LIMIT = 1e12  # a price beyond ×/÷ this has run away: stop the run (not converged)


@dataclass
class Run:
    """One market's history; `prices[t]` = (p_U, p_D) in round t, `gap[t]` its max |g|
    relative to d_X/d_S (the convergence measure), `g[t]` Definition 3's g itself."""

    prices: list[tuple[float, float]] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    g: list[tuple[float, float]] = field(default_factory=list)
    converged_round: int | None = None
    negative: bool = False
    diverged: bool = False
    lagging: bool = False  # the update took the damped step on some round
    buffers: tuple[float, float, float] | None = None

    @property
    def converged(self) -> bool:
        return self.converged_round is not None

    @property
    def final(self) -> tuple[float, float]:
        return self.prices[-1]


def _resources(v: np.ndarray) -> Resources:
    return Resources(float(v[0]), float(v[1]), float(v[2]))


def _noisy(v: np.ndarray, noise: float, rng: np.random.Generator) -> Resources:
    if noise <= 0:
        return _resources(v)
    return _resources(v * np.exp(rng.normal(0.0, noise, 3)))


def simulate(e: Economy, start: tuple[float, float], rounds: int = 100, rule: str = "safe",
             noise: float = 0.0, lag: float = 1.0, seed: int = 0,
             tol: float = DEFAULT_TOL, params: Params = Params(),
             zero: int | None = None) -> Run:
    """Run the market from p = (1, *start) until max relative |g| ≤ tol, a non-positive
    price (the paper's rule only) or `rounds` updates. `lag` = share re-optimising;
    `zero` = a resource (0 S, 1 U, 2 D) nobody supplies until they re-optimise."""
    if not 0 < lag <= 1:
        raise ValueError("lag (the share of agents re-optimising each round) must be in (0, 1]")
    rng = np.random.default_rng(seed + 7919)
    p = Resources(1.0, *start)
    state: UpdateState | None = None
    chosen: np.ndarray | None = None
    run = Run()
    demand = e.demand
    for t in range(rounds + 1):
        if t == 0 and zero is not None:
            chosen = supply_at(e, np.array(p.as_tuple()))
            chosen[:, zero] = 0.0
        else:
            chosen = _respond(e, p, chosen, lag, rng)
        supply = chosen.sum(axis=0)
        _record(run, p, supply, demand)
        if run.gap[-1] <= tol:
            run.converged_round = t
            break
        if t == rounds:
            break
        p, state = update(p, _noisy(supply, noise, rng), _noisy(demand, noise, rng), state,
                          rule, params)
        run.lagging = run.lagging or state.lagging
        if _halted(run, p):
            break
    return run


def _record(run: Run, p: Resources, supply: np.ndarray, demand: np.ndarray) -> None:
    truth_s, truth_d = _resources(supply), _resources(demand)
    run.prices.append((p.upload, p.download))
    if min(supply) <= 0:  # a resource nobody supplies: as far from balance as can be
        run.gap.append(math.inf)
        run.g.append((math.nan, math.nan))
        return
    run.gap.append(relative_gap(truth_s, truth_d))
    run.g.append(g_of(truth_s, truth_d))
    run.buffers = (float(supply[0] / demand[0]), float(supply[1] / demand[1]),
                   float(supply[2] / demand[2]))


def _halted(run: Run, p: Resources) -> bool:
    """A price the market cannot run at: non-positive (paper's rule) or run away."""
    if not (p.upload > 0 and p.download > 0):
        run.negative = True
    elif max(p.upload, p.download, 1 / p.upload, 1 / p.download) > PRICE_LIMIT:
        run.diverged = True
    else:
        return False
    run.prices.append((p.upload, p.download))
    return True


def _respond(e: Economy, p: Resources, chosen: np.ndarray | None, lag: float,
             rng: np.random.Generator) -> np.ndarray:
    """Agents' supply at p: all on the first round, then only a `lag` share."""
    pa = np.array(p.as_tuple())
    if chosen is None or lag >= 1:
        return supply_at(e, pa, chosen)
    movers = rng.random(e.n) < lag
    fresh = supply_at(subset(e, np.flatnonzero(movers)), pa, chosen[movers])
    out = chosen.copy()
    out[movers] = fresh
    return out


def equilibrium(e: Economy, guess: tuple[float, float] = (1.0, 1.0),
                tol: float = 1e-10) -> tuple[float, float]:
    """The buffer equilibrium (p_U, p_D): the safe rule to get near, then a Newton polish
    (scipy) on h in log-price. Raises ValueError if no root is found."""
    # imported here, not at the top: keeps CLI start-up fast (scipy)
    from scipy.optimize import root

    run = simulate(e, guess, rounds=200, rule="safe", tol=1e-6)
    if not run.converged:
        raise ValueError("no equilibrium found")

    def hx(x: np.ndarray) -> np.ndarray:
        pa = np.array([1.0, math.exp(x[0]), math.exp(x[1])])
        return np.array(h_of(_resources(supply_at(e, pa).sum(axis=0)),
                             _resources(e.demand)))

    sol = root(hx, np.log(run.final), method="hybr", options={"xtol": tol})
    x = sol.x if sol.success and np.abs(hx(sol.x)).max() < 1e-8 else np.log(run.final)
    return (math.exp(x[0]), math.exp(x[1]))


def far_start(p_star: tuple[float, float], factor: float, angle: float) -> tuple[float, float]:
    """A start `factor`× away from p* along a direction: the farther coordinate is exactly
    `factor` (or 1/factor) times its equilibrium value."""
    u = np.array([math.cos(angle), math.sin(angle)])
    u /= np.abs(u).max()
    return (p_star[0] * factor ** u[0], p_star[1] * factor ** u[1])
