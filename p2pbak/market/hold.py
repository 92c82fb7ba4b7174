"""Holding prices for a market that has not answered the last move (DESIGN.md §5).

In the running system supply is the users' caps and demand their usage, and users move
their sliders rarely. A rule that moves prices every day whatever S and d do walks a
price the market ignores to its bound. So the update remembers the S and d its last move
was computed from, and holds the prices while neither has moved since by more than their
measured noise (`threshold`: z times the noise, never below rounding); it moves again once
they have, or after a maximum hold, and then never farther than ×2 (in all) from the
price the market last answered. The secant after a hold spans the whole hold: the day of
the last move to today.

The noise is measured, not assumed: on a held day nobody was asked to answer anything,
so what S and d moved since the day before is noise (availability estimates drifting, a
user touching a slider for reasons of their own). A running mean of its square starts
at a prior, which the first held day's measurement replaces. A move whose expected
answer (measured slope × move, in h) is itself below the threshold is not waited for:
no hold could tell its answer from the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Pair = tuple[float, float]
Seen = tuple[float, float, float, float, float, float]  # (S_S, S_U, S_D, d_S, d_U, d_D)


@dataclass(frozen=True)
class Hold:
    """Carried from day to day inside the update state."""

    seen: Seen | None = None  # S and d the last move was computed from
    held: int = 0  # days held since the last move
    drift: Pair = (0.0, 0.0)  # ln-price moved since the market last answered
    last: Seen | None = None  # S and d seen on the previous day (held or not)
    noise: float | None = None  # measured RMS day-to-day |Δln| of S and d on held days

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Hold:
        if not data:
            return cls()
        drift = data.get("drift") or (0.0, 0.0)
        noise = data.get("noise")
        return cls(seen=_seen(data.get("seen")),
                   held=int(data.get("held", 0)),  # type: ignore[arg-type]
                   drift=(float(drift[0]), float(drift[1])),  # type: ignore[index]
                   last=_seen(data.get("last")),
                   noise=None if noise is None else float(noise))  # type: ignore[arg-type]


def _seen(v: object) -> Seen | None:
    return None if v is None else tuple(float(x) for x in v)  # type: ignore[return-value,attr-defined]


def change(before: Seen, now: Seen) -> float:
    """Largest relative move of any component of S or d, as |ln(now/before)|."""
    return max(abs(math.log(b / a)) for a, b in zip(before, now, strict=True))


NOISE_WEIGHT = 0.3  # weight of today's held-day change in the running mean of its square


def noise(hold: Hold, prior: float) -> float:
    """The measured day-to-day noise of S and d (the prior until a held day measured it)."""
    return prior if hold.noise is None else hold.noise


def threshold(hold: Hold, tol: float, z: float, prior: float) -> float:
    """How far S and d must move (|Δln|, any component) to count as an answer."""
    return max(tol, z * noise(hold, prior))


def answered(hold: Hold, seen: Seen, limit: float, expected: float = math.inf) -> bool:
    """Whether S or d moved since the last move by more than `limit` (a first day always
    counts), or the move was too small (`expected` answer ≤ limit) to wait for."""
    return hold.seen is None or change(hold.seen, seen) > limit or expected <= limit


def measure(hold: Hold, seen: Seen, prior: float) -> float | None:
    """The noise after a held day: the running mean of the squared change since the
    previous day (a change no price move asked for); the first measurement replaces the
    prior."""
    if hold.last is None:
        return hold.noise
    today = change(hold.last, seen)
    if hold.noise is None:
        return today
    return math.sqrt((1 - NOISE_WEIGHT) * hold.noise ** 2 + NOISE_WEIGHT * today ** 2)


def moved(cur: Pair, new: Pair) -> Pair:
    """ln(new/cur) per coordinate (0 where a price is not positive)."""
    return (_ln_ratio(cur[0], new[0]), _ln_ratio(cur[1], new[1]))


def _ln_ratio(a: float, b: float) -> float:
    return math.log(b / a) if a > 0 and b > 0 else 0.0


def bound_move(cur: Pair, new: Pair, drift: Pair, limit: float) -> tuple[Pair, Pair]:
    """`new` pulled back so that the ln-price moved since the last answer stays within
    ±limit; returns (prices, drift). Non-positive prices (the paper's rule) are left alone."""
    if min(new) <= 0 or min(cur) <= 0:
        return new, drift
    out, moved = [], []
    for c, n, d in zip(cur, new, drift, strict=True):
        total = max(-limit, min(limit, d + math.log(n / c)))
        out.append(c * math.exp(total - d))
        moved.append(total)
    return (out[0], out[1]), (moved[0], moved[1])
