"""Simulated users (§3.2-3.3): endowments, exogenous demand, CES preferences, and the
utility maximisation problem of Definition 1, vectorised over agents.

Agent i keeps K = ω − S (eq. 1) and buys t units of its own service mix d_i (perfect
complements, Assumption 2), so D_i = t·d_i. With c_i = p·(A·d_i) the flow constraint (2)
reads K·p + t·c_i = ω·p: an ordinary budget over x = (K_S/ω_S, K_U/ω_U, K_D/ω_D, t) (each
resource counted in whole endowments, so that units do not matter) with prices
π = (p_S·ω_S, p_U·ω_U, p_D·ω_D, c_i) and wealth w = ω·p. Utility is CES,
u = (Σ a_j x_j^ρ)^{1/ρ} (Cobb-Douglas at ρ = 0), whose demand is closed-form:
x_j = w·a_j^σ·π_j^{−σ} / Σ_k a_k^σ·π_k^{1−σ}, σ = 1/(1−ρ). Where that point breaks
(3) t ≥ 1, (4) the ratio constraints or (5) S ≥ 0, a solver takes over: a batched
log-barrier Newton method (market.barrier) for speed, or scipy's SLSQP agent by agent
(the reference the tests hold the barrier solver to).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pbak.market.barrier import maximise
from p2pbak.market.ces import gradient, log_utility
from p2pbak.market.prices import Overheads, resources_needed
from p2pbak.market.resources import Resources, Services
from p2pbak.market.supply import RatioLimits

FEAS_TOL = 1e-9
TINY = 1e-300
KEEP_MIN = 1e-9  # share of each endowment always kept (utility needs K > 0 when ρ ≤ 0)
ENDOWMENT_MULTIPLE = 5.0  # users own about 5× what their demand needs...
ENDOWMENT_SPREAD = 0.15  # ...each resource spread lognormally around it
WEIGHT_CONCENTRATION = (30.0, 30.0, 30.0, 45.0)  # Dirichlet: CES weights of K_S, K_U, K_D, t


@dataclass(frozen=True)
class Economy:
    endowment: np.ndarray  # (N, 3) ω: effective GB, upload GB/day, download GB/day
    services: np.ndarray  # (N, 3) d_i: backup GB/day, storage GB, retrieval GB/day
    need: np.ndarray  # (N, 3) A·d_i: resources one unit of t costs the suppliers
    weights: np.ndarray  # (N, 4) CES weights over (K_S, K_U, K_D, t)
    rho: float
    ratio: np.ndarray  # (3, 3) r_XY of eq. (4)
    overheads: Overheads
    market_demand: np.ndarray | None = None  # the whole market's d, for a subset

    @property
    def n(self) -> int:
        return int(self.endowment.shape[0])

    @property
    def demand(self) -> np.ndarray:
        """Aggregate resource demand d (§3.3): Σ_i A·d_i (of the whole market)."""
        if self.market_demand is not None:
            return self.market_demand
        return self.need.sum(axis=0)


def _need(services: np.ndarray, o: Overheads) -> np.ndarray:
    """Row-wise A·d: prices.resources_needed applied to whole columns at once."""
    need = resources_needed(Services(*services.T), o)  # type: ignore[arg-type]
    return np.column_stack(need.as_tuple())


def make_economy(n: int = 100, seed: int = 0, rho: float = 0.5, slack: float = 4.0,
                 overheads: Overheads | None = None, stored_sigma: float = 0.6) -> Economy:
    """A random economy of n users; every user can afford its demand at any prices.
    Users' stored data is lognormal around 15 GB with σ = `stored_sigma`."""
    if n < 1 or not rho < 1 or not slack > 1:
        raise ValueError("need at least one agent, rho < 1 and slack > 1")
    o = overheads or Overheads()
    rng = np.random.default_rng(seed)
    stored = np.exp(rng.normal(np.log(15.0), stored_sigma, size=n))
    services = np.column_stack([stored * rng.uniform(0.005, 0.03, n), stored,
                                stored * rng.uniform(0.0005, 0.005, n)])
    need = _need(services, o)
    # endowments a few times what a user of this size needs on average, each resource
    # drawn apart (users differ in what they have, not only in how much)
    typical = need.sum(axis=0) / stored.sum()
    omega = stored[:, None] * typical * \
        np.exp(rng.normal(np.log(ENDOWMENT_MULTIPLE), ENDOWMENT_SPREAD, (n, 3)))
    weights = rng.dirichlet(WEIGHT_CONCENTRATION, size=n)
    for _ in range(3):  # demand well inside what a ratio-respecting supply pays, any p
        room = (_start_scale(omega, need.sum(axis=0)) / (2.0 * need)).min(axis=1)
        services = services * np.minimum(1.0, room)[:, None]
        need = _need(services, o)
    d = Resources(*need.sum(axis=0))
    ratio = np.array(RatioLimits.from_demand(d, slack).r)
    return Economy(omega, services, need, weights, float(rho), ratio, o)


def _sigma(rho: float) -> float:
    return 1.0 / (1.0 - rho)


def closed_form(e: Economy, p: np.ndarray) -> np.ndarray:
    """Unconstrained CES demand x = (K_S, K_U, K_D, t) for every agent, (N, 4)."""
    sig = _sigma(e.rho)
    c = e.need @ p
    pi = np.column_stack([e.endowment * p, c])  # price of a whole endowment, of t = 1
    w = e.endowment @ p
    denom = (e.weights ** sig * pi ** (1.0 - sig)).sum(axis=1)
    x = (w / denom)[:, None] * e.weights ** sig * pi ** (-sig)
    x[:, :3] *= e.endowment
    return x


def violations(e: Economy, p: np.ndarray, supply: np.ndarray) -> np.ndarray:
    """Per agent, whether a supply breaks (3), (4) or (5); (N,) bool."""
    c = e.need @ p
    affordable = supply @ p >= c * (1 - FEAS_TOL)  # (3)
    within = (supply >= -FEAS_TOL * e.endowment).all(axis=1) & \
        (supply <= e.endowment * (1 + FEAS_TOL)).all(axis=1)  # (5)
    ratios = supply[:, :, None] <= e.ratio[None] * supply[:, None, :] * (1 + 1e-7) + 1e-12
    return ~(affordable & within & ratios.all(axis=(1, 2)))


def solve_agent(e: Economy, i: int, p: np.ndarray, start: np.ndarray | None = None
                ) -> np.ndarray:
    """Definition 1 for agent i with every constraint, by SLSQP; returns S_i (3,)."""
    # imported here, not at the top: keeps CLI start-up fast (scipy)
    from scipy.optimize import minimize

    omega, a, c = e.endowment[i], e.weights[i], float(e.need[i] @ p)

    def x_of(z: np.ndarray) -> np.ndarray:  # the goods in utility units: K/ω and t
        return np.append(1.0 - z, (z * omega) @ p / c)

    def obj(z: np.ndarray) -> float:
        return -float(log_utility(a[None], e.rho, np.maximum(x_of(z), TINY)[None])[0])

    def jac(z: np.ndarray) -> np.ndarray:
        gx = gradient(a[None], e.rho, np.maximum(x_of(z), TINY)[None])[0]
        return -(-gx[:3] + gx[3] * omega * p / c)

    aa, b = _constraints(subset(e, np.array([i])), p, (omega * p / c)[None, :])
    cons = {"type": "ineq", "fun": lambda z: b[0] - aa[0] @ z, "jac": lambda z: -aa[0]}
    z0 = _feasible_start(e, i, p) if start is None else np.clip(start / omega, 0, 1)
    res = minimize(obj, z0, jac=jac, method="SLSQP", constraints=[cons],
                   options={"maxiter": 200, "ftol": 1e-12})
    return np.clip(res.x, 0.0, 1.0 - KEEP_MIN) * omega


def _start_scale(omega: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Points S = α·d on the aggregate demand ray that fit in each endowment, (N, 3)."""
    return 0.9 * (omega / direction).min(axis=1, keepdims=True) * direction


def _feasible_start(e: Economy, i: int, p: np.ndarray) -> np.ndarray:
    """z strictly inside every constraint (make_economy guarantees it: t ≥ 2 there)."""
    return _start_scale(e.endowment[i:i + 1], e.demand)[0] / e.endowment[i]


def _constraints(e: Economy, p: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constraints (3)-(5) on z = S/ω as A·z ≤ b: (N, 13, 3), (N, 13)."""
    n = e.n
    rows = [np.broadcast_to(-np.eye(3), (n, 3, 3)), np.broadcast_to(np.eye(3), (n, 3, 3)),
            -v[:, None, :]]
    offs = [np.zeros((n, 3)), np.full((n, 3), 1.0 - KEEP_MIN), -np.ones((n, 1))]
    for x in range(3):
        for y in range(3):
            if x != y:  # z_X − r_XY·ω_Y/ω_X·z_Y ≤ 0
                row = np.zeros((n, 1, 3))
                row[:, 0, x] = 1.0
                row[:, 0, y] = -e.ratio[x, y] * e.endowment[:, y] / e.endowment[:, x]
                rows.append(row)
                offs.append(np.zeros((n, 1)))
    return np.concatenate(rows, axis=1), np.concatenate(offs, axis=1)


def solve_batch(e: Economy, p: np.ndarray) -> np.ndarray:
    """Definition 1 with every constraint for all agents of `e`, by the barrier solver."""
    v = e.endowment * p / (e.need @ p)[:, None]  # t = v·z
    m0 = np.tile([1.0, 1.0, 1.0, 0.0], (e.n, 1))
    mm = np.concatenate([np.broadcast_to(-np.eye(3), (e.n, 3, 3)), v[:, None, :]], axis=1)
    aa, b = _constraints(e, p, v)
    z0 = _start_scale(e.endowment, e.demand) / e.endowment
    return maximise(e.weights, e.rho, m0, mm, aa, b, z0) * e.endowment


def supply_at(e: Economy, p: np.ndarray, previous: np.ndarray | None = None,
              solver: str = "barrier") -> np.ndarray:
    """Every agent's chosen maximum supply S_i at prices p (Definition 1), (N, 3): closed
    form where it is feasible; elsewhere the batched barrier solver, or scipy's SLSQP
    agent by agent (`solver="scipy"`, warm-started from `previous`)."""
    if min(p) <= 0:
        raise ValueError("prices must be positive")
    x = closed_form(e, p)
    supply = e.endowment - x[:, :3]
    bad = np.flatnonzero(violations(e, p, supply))
    if bad.size and solver == "barrier":
        supply[bad] = solve_batch(subset(e, bad), p)
    elif bad.size:
        for i in bad:
            start = None if previous is None else previous[i]
            supply[i] = solve_agent(e, int(i), p, start)
    return supply


def subset(e: Economy, which: np.ndarray) -> Economy:
    """The same economy restricted to some agents (ratio limits stay aggregate, and so
    does the demand ray used for starting points)."""
    return Economy(e.endowment[which], e.services[which], e.need[which], e.weights[which],
                   e.rho, e.ratio, e.overheads, e.demand)
