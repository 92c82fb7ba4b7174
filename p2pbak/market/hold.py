"""Holding prices for a market that has not answered the last move (DESIGN.md §5).

In the running system supply is the users' caps and demand their usage, and users move
their sliders rarely. A rule that moves prices every day whatever S and d do walks a
price the market ignores to its bound. So the update remembers the S and d its last move
was computed from, and holds the prices while neither has moved since (by more than a
relative tolerance in any component); it moves again once they have, or after a maximum
hold, and then never farther than ×2 (in all) from the price the market last answered.
The secant after a hold spans the whole hold: the day of the last move to today.
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

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Hold:
        if not data:
            return cls()
        seen = data.get("seen")
        drift = data.get("drift") or (0.0, 0.0)
        return cls(seen=None if seen is None else tuple(float(v) for v in seen),  # type: ignore[arg-type,union-attr]
                   held=int(data.get("held", 0)),  # type: ignore[arg-type]
                   drift=(float(drift[0]), float(drift[1])))  # type: ignore[index]


def change(before: Seen, now: Seen) -> float:
    """Largest relative move of any component of S or d, as |ln(now/before)|."""
    return max(abs(math.log(b / a)) for a, b in zip(before, now, strict=True))


def answered(hold: Hold, seen: Seen, tol: float) -> bool:
    """Whether S or d moved since the last move (a first day always counts)."""
    return hold.seen is None or change(hold.seen, seen) > tol


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
