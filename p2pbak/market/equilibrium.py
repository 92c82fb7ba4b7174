"""Aggregate supply and demand, g(p) (§4.3, Definition 3) and its scale-free form h(p)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from p2pbak.market.prices import Overheads, resources_needed
from p2pbak.market.resources import Resources, Services


def aggregate(vectors: Iterable[Resources]) -> Resources:
    """Σ_i over users' supply (or demand) vectors."""
    s = u = d = 0.0
    for v in vectors:
        s, u, d = s + v.space, u + v.upload, d + v.download
    return Resources(s, u, d)


def aggregate_demand(demands: Iterable[Services], o: Overheads) -> Resources:
    """d = Σ_i A·d_i: aggregate resource demand from service demand (§3.3, last paragraph)."""
    return aggregate(resources_needed(d, o) for d in demands)


def _check(supply: Resources, demand: Resources) -> None:
    if min(supply.as_tuple()) <= 0 or min(demand.as_tuple()) <= 0:
        raise ValueError("aggregate supply and demand must be positive in every resource")


def g(supply: Resources, demand: Resources) -> tuple[float, float]:
    """Definition 3: g(p) = (S_U/S_S − d_U/d_S, S_D/S_S − d_D/d_S); zero at the equilibrium."""
    _check(supply, demand)
    return (supply.upload / supply.space - demand.upload / demand.space,
            supply.download / supply.space - demand.download / demand.space)


def h(supply: Resources, demand: Resources) -> tuple[float, float]:
    """h_X = ln(S_X/d_X) − ln(S_S/d_S): same root as g, invariant to the units of S and d."""
    _check(supply, demand)
    base = math.log(supply.space / demand.space)
    return (math.log(supply.upload / demand.upload) - base,
            math.log(supply.download / demand.download) - base)


def relative_gap(supply: Resources, demand: Resources) -> float:
    """max_X |g_X| / (d_X/d_S) = max_X |e^{h_X} − 1|: the convergence measure (unit-free)."""
    return max(abs(math.expm1(v)) for v in h(supply, demand))


def buffers(supply: Resources, demand: Resources) -> Resources:
    """S_X/d_X per resource; Definition 2 asks them all equal."""
    _check(supply, demand)
    return Resources(supply.space / demand.space, supply.upload / demand.upload,
                     supply.download / demand.download)
