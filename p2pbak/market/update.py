"""The daily price update (§5.1): the paper's Definition 4 and the project's safeguarded rule.

Only p_U and p_D move; p_S stays 1 (§5). Both rules see the market only through the
aggregate maximum supply S and demand d measured at today's prices, and are invariant to
scaling S and d (g and h depend on ratios only).

`paper`: Definition 4 as printed, p_X ← p_X − (p_X − p'_X)/(g_X − g'_X)·g_X, a diagonal
secant on g. Cases the paper defers to its working paper, handled here so it never divides
by zero: with no previous day, or when g_X(p^t) = g_X(p^{t−1}) (up to rounding), it takes a probe
step p_X·e^{∓probe} against the sign of g_X (so the next secant has two distinct points).
Nothing else is guarded: it may return a non-positive price, which is what §5.2 reports.

`safe`: a secant step in x = ln p on h_X = ln(S_X/d_X) − ln(S_S/d_S) (same root as g):
  * slope m_X = Δh/Δx kept positive and clipped to [min_slope, max_slope]; re-measured only
    after a move of at least min_dx (else the last slope is kept);
  * step −h/m capped at ±cap (cap ≤ ln 2: at most ×2 or ÷2 a day); the cap halves on a
    sign flip without progress (|h| > progress·|h'| and |h| > flip_floor, so that noise
    around a balanced resource is no overshoot), doubles back toward ln 2 otherwise;
  * a market whose users re-optimise late shows as repeated flips without progress (the
    secant slope, measured across days on an unsettled market, is too shallow): after
    `lag_after` such flips the rule switches, for good, to the damped
    step x ← x − η·h capped at ln 2 (DESIGN.md §5);
  * a coordinate tied by eq. (4) to the other (h = 0 on two days running while the other
    is far out) moves opposite to the other by the same step (`_untie`);
  * prices stay positive by construction (they move by a factor e^{step}).

Both rules hold the prices on a day when S and d have not moved since the last move (the
market has not answered it yet), for at most `max_hold` days (market.hold).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from p2pbak.market import hold as holding
from p2pbak.market.equilibrium import g as g_of
from p2pbak.market.equilibrium import h as h_of
from p2pbak.market.resources import Resources

RULES = ("paper", "safe")
LN2 = math.log(2.0)
ROUNDING = 1e-12  # |g_X| below this times d_X/d_S is zero (floating-point noise)

Pair = tuple[float, float]


@dataclass(frozen=True)
class Params:
    """Tuning of both rules (defaults are the ones the simulator and the bank use)."""

    probe: float = 0.1  # paper: first (and zero-denominator) step, in log-price
    max_step: float = LN2  # safe: largest move per day, ×2 or ÷2
    min_cap: float = LN2 / 64
    slope0: float = 1.0  # safe: slope assumed before two points are known
    min_slope: float = 0.05
    max_slope: float = 20.0
    min_dx: float = 1e-6  # slopes from smaller moves are floating-point noise
    progress: float = 0.5
    flip_floor: float = 0.05
    lag_after: int = 2
    eta: float = 0.3  # damped step for a lagging market
    cross: float = 2.0  # a flip while the other |h| is beyond cross·|h| is the other's doing
    tie_tol: float = 1e-6  # safe: |h| below this, beside a far-out other, is an eq. (4) tie
    # both rules: S and d unchanged to this (relative, any component) since the last move
    # means the market has not answered it. The default is rounding: simulated users at a
    # ratio limit answer a ×2 move by as little as 1e-9. The coordinator, whose S is caps
    # that only users move, passes a coarser one (coordinator.prices.RESPOND_TOL).
    respond_tol: float = 1e-12
    max_hold: int = 7  # intervals (days); then a move again, within ×2 of the last answer


@dataclass(frozen=True)
class UpdateState:
    """What the update carries from one day to the next (stored by the coordinator)."""

    rule: str
    p: Pair | None = None  # (p_U, p_D) of the day `value` was measured at
    value: Pair | None = None  # g (paper) or h (safe) measured then
    slope: Pair = (1.0, 1.0)
    cap: Pair = (LN2, LN2)
    overshoots: int = 0
    lagging: bool = False
    hold: holding.Hold = field(default_factory=holding.Hold)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> UpdateState:
        def pair(key: str) -> Pair | None:
            v = data.get(key)
            return None if v is None else (float(v[0]), float(v[1]))  # type: ignore[index]

        rule = str(data["rule"])
        if rule not in RULES:
            raise ValueError(f"unknown price update rule {rule!r}")
        return cls(rule=rule, p=pair("p"), value=pair("value"),
                   slope=pair("slope") or (1.0, 1.0), cap=pair("cap") or (LN2, LN2),
                   overshoots=int(data.get("overshoots", 0)),  # type: ignore[arg-type]
                   lagging=bool(data.get("lagging", False)),
                   hold=holding.Hold.from_dict(data.get("hold")))  # type: ignore[arg-type]


def new_state(rule: str = "safe", params: Params = Params()) -> UpdateState:
    if rule not in RULES:
        raise ValueError(f"unknown price update rule {rule!r} (choose from {', '.join(RULES)})")
    return UpdateState(rule=rule, slope=(params.slope0, params.slope0),
                       cap=(params.max_step, params.max_step))


def update(p: Resources, supply: Resources, demand: Resources,
           state: UpdateState | None = None, rule: str = "safe",
           params: Params = Params()) -> tuple[Resources, UpdateState]:
    """Tomorrow's prices from today's p, S(p) and d(p); returns (p', state').

    `rule` picks the rule for a fresh start (state None); a stored state keeps its own.
    A day with no supply or no demand of some resource measures nothing: prices are held.
    So is a day on which neither S nor d moved since the last move (market.hold), for up
    to `max_hold` days; `held_reason(state')` says so."""
    state = state or new_state(rule, params)
    if min(supply.as_tuple()) <= 0 or min(demand.as_tuple()) <= 0:
        return p, state
    seen: holding.Seen = supply.as_tuple() + demand.as_tuple()  # type: ignore[assignment]
    fresh = holding.answered(state.hold, seen, params.respond_tol)
    if not fresh and state.hold.held < params.max_hold:
        return p, _held(state)
    new_p, after = _rule(p, supply, demand, state, params)
    cur, new = (p.upload, p.download), (new_p.upload, new_p.download)
    if fresh:
        drift = holding.moved(cur, new)
    else:
        new, drift = holding.bound_move(cur, new, state.hold.drift, params.max_step)
        if new == cur:  # already ×2 from where the market last answered
            return p, _held(state)
        new_p = Resources(1.0, *new)
    return new_p, replace(after, hold=holding.Hold(seen=seen, drift=drift))


def _held(state: UpdateState) -> UpdateState:
    """The state after one more day held."""
    return replace(state, hold=replace(state.hold, held=state.hold.held + 1))


def held_reason(state: UpdateState, params: Params = Params()) -> str:
    """Why the last update kept the prices, or "" if it moved them."""
    n = state.hold.held
    if n == 0:
        return ""
    if n <= params.max_hold:
        return f"held: no response since last move ({n} of at most {params.max_hold} intervals)"
    return "held: no response since last move, and already ×2 from the last answered price"


def _rule(p: Resources, supply: Resources, demand: Resources, state: UpdateState,
          params: Params) -> tuple[Resources, UpdateState]:
    cur: Pair = (p.upload, p.download)
    if state.rule == "paper":
        val = g_of(supply, demand)
        # rounding noise relative to d_X/d_S, so that "g = 0" and "g = g'" mean the same
        # thing whatever the units of S and d
        tol = (ROUNDING * demand.upload / demand.space,
               ROUNDING * demand.download / demand.space)
        val = (_snap(val[0], tol[0]), _snap(val[1], tol[1]))
        new = tuple(_paper(cur[i], val[i], state, i, tol[i], params) for i in range(2))
        return Resources(1.0, new[0], new[1]), replace(state, p=cur, value=val)
    if min(cur) <= 0:
        raise ValueError("the safe rule needs positive prices")
    return _safe(cur, h_of(supply, demand), state, params)


def _snap(v: float, tol: float) -> float:
    return 0.0 if abs(v) <= tol else v


def _paper(px: float, gx: float, state: UpdateState, i: int, tol: float,
           params: Params) -> float:
    """Definition 4 for one coordinate X ∈ {U, D}."""
    if state.p is None or state.value is None or abs(gx - state.value[i]) <= tol:
        return px * math.exp(-math.copysign(params.probe, gx)) if gx else px
    return px - (px - state.p[i]) / (gx - state.value[i]) * gx


def _safe(cur: Pair, hv: Pair, state: UpdateState,
          params: Params) -> tuple[Resources, UpdateState]:
    x = (math.log(cur[0]), math.log(cur[1]))
    slopes, caps, steps = [], [], []
    overshoots = state.overshoots
    for i in range(2):
        slope, cap, flipped = _measure(x[i], hv[i], state, i, params)
        # a flip while the other resource is much farther from balance is what the
        # other's move did to this one (budgets and eq. 4 tie them), not a sign of a lag
        overshoots += flipped and params.cross * abs(hv[i]) >= abs(hv[1 - i])
        slopes.append(slope)
        caps.append(cap)
    lagging = state.lagging or overshoots >= params.lag_after
    for i in range(2):
        if lagging:
            steps.append(_clip(-params.eta * hv[i], params.max_step))
        else:
            steps.append(_clip(-hv[i] / slopes[i], caps[i]))
    steps = _untie(hv, state.value, steps, params)
    new = Resources(1.0, math.exp(x[0] + steps[0]), math.exp(x[1] + steps[1]))
    return new, replace(state, p=cur, value=hv, slope=(slopes[0], slopes[1]),
                        cap=(caps[0], caps[1]), overshoots=overshoots, lagging=lagging)


def _untie(hv: Pair, prev: Pair | None, steps: list[float], params: Params) -> list[float]:
    """A coordinate tied by eq. (4) moves against the one that ties it, by the same step.

    When X sits at a ratio limit (far too dear: users supply all of it the constraints let
    them; far too cheap: as little), the constraints fix Y's supply at exactly the level
    that makes h_Y = 0: users supply the least Y that X requires (X in surplus), or the
    most that X allows (X scarce). The measured 0 is then a bound, not a balance: Y is at
    least as scarce as it looks (resp. as plentiful), so its price moves the opposite way
    to X's. A tie shows as h_Y = 0 on two days running while X is far out (a price that
    merely reached its root once is not one). If the push goes too far the tie breaks and
    h_Y shows it, while X, the farther one, still has more way to go than Y."""
    if prev is None:
        return steps
    for i, j in ((0, 1), (1, 0)):
        tied = max(abs(hv[i]), abs(prev[i])) <= params.tie_tol
        if tied and min(abs(hv[j]), abs(prev[j])) > params.flip_floor:
            out = list(steps)
            out[i] = -steps[j]
            return out
    return steps


def _measure(xi: float, hi: float, state: UpdateState, i: int,
             params: Params) -> tuple[float, float, int]:
    """Slope, cap and whether today shows an overshoot, for coordinate i."""
    slope, cap = state.slope[i], state.cap[i]
    if state.p is None or state.value is None:
        return slope, cap, 0
    prev_x, prev_h = math.log(state.p[i]), state.value[i]
    dx = xi - prev_x
    if abs(dx) >= params.min_dx:
        m = (hi - prev_h) / dx
        if math.isfinite(m) and m > 0:
            slope = min(max(m, params.min_slope), params.max_slope)
    # an overshoot: the sign flipped without progress, by more than measurement noise
    flip = hi * prev_h < 0 and abs(hi) > max(params.progress * abs(prev_h), params.flip_floor)
    if flip:
        cap = max(cap / 2, params.min_cap)
    elif hi * prev_h > 0 or abs(hi) <= params.flip_floor:
        cap = min(cap * 2, params.max_step)
    return slope, cap, int(flip)


def _clip(v: float, bound: float) -> float:
    return max(-bound, min(bound, v))
