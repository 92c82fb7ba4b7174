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
  * a market whose users re-optimise late shows in the data as responses that keep
    lagging: the secant slope, measured across days on an unsettled market, is too
    shallow, and step after step overshoots (the sign flips without progress). After
    `lag_after` overshoots close together (one overshoot the other price caused does not count)
    the rule takes the damped step x ← x − η·h capped at ln 2 (DESIGN.md §5); once the
    market answers again (`calm` days in a row of progress without a flip) it leaves the
    damped mode, and re-enters it if the lag shows again;
  * a coordinate tied by eq. (4) to the other (h = 0 on two days running while the other
    is far out) moves opposite to the other by the same step (`_untie`);
  * prices stay positive by construction (they move by a factor e^{step}).

Both rules hold the prices on a day when S and d have not moved since the last move by
more than their measured noise (the market has not answered it yet), for at most
`max_hold` days (market.hold). A resource nobody supplies yet (S_X = 0) is floored at a
small share of the best-supplied one's buffer, so h has a sign and its price a direction.
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
    lag_after: int = 2  # overshoots, each within lag_window days of the one before...
    lag_window: int = 10  # ...show a lagging market
    calm: int = 10  # days in a row of progress in damped mode: the market answers again
    eta: float = 0.3  # damped step for a lagging market
    cross: float = 2.0  # a flip while the other |h| is beyond cross·|h| is the other's doing
    tie_tol: float = 1e-6  # safe: |h| below this, beside a far-out other, is an eq. (4) tie
    # both rules: S and d unchanged since the last move (relative, any component) to
    # within noise_z × their measured noise, and never less than respond_tol (rounding:
    # simulated users at a ratio limit answer a ×2 move by as little as 1e-9), means the
    # market has not answered it. noise0 is the noise assumed until held days measured
    # it: 0 for the simulator; the coordinator, whose S is caps that only users move
    # while availability estimates drift, starts from COORDINATOR's.
    respond_tol: float = 1e-12
    noise_z: float = 3.0
    noise0: float = 0.0
    max_hold: int = 7  # intervals (days); then a move again, within ×2 of the last answer
    supply_floor: float = 1e-3  # S_X = 0 counts as this share of the largest buffer


@dataclass(frozen=True)
class UpdateState:
    """What the update carries from one day to the next (stored by the coordinator)."""

    rule: str
    p: Pair | None = None  # (p_U, p_D) of the day `value` was measured at
    value: Pair | None = None  # g (paper) or h (safe) measured then
    slope: Pair = (1.0, 1.0)
    cap: Pair = (LN2, LN2)
    overshoots: int = 0  # overshoots, each within lag_window days of the one before
    since: int = 0  # days since the last of them
    lagging: bool = False
    calm: int = 0  # days in a row of progress while lagging
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
                   calm=int(data.get("calm", 0)),  # type: ignore[arg-type]
                   since=int(data.get("since", 0)),  # type: ignore[arg-type]
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
    A day with no demand of some resource, or no supply at all, measures nothing: prices
    are held. So is a day on which neither S nor d moved since the last move by more than
    their noise (market.hold), for up to `max_hold` days; `held_reason(state')` says so."""
    state = state or new_state(rule, params)
    if min(demand.as_tuple()) <= 0 or max(supply.as_tuple()) <= 0:
        return p, state
    supply = floor_supply(supply, demand, params.supply_floor)
    seen: holding.Seen = supply.as_tuple() + demand.as_tuple()  # type: ignore[assignment]
    h0 = state.hold
    fresh = _answered(state, seen, params)
    if not fresh and h0.held >= 1:
        # prices stood still since yesterday and S, d moved by less than an answer: noise
        h0 = replace(h0, noise=holding.measure(h0, seen, params.noise0))
        state = replace(state, hold=h0)
        fresh = _answered(state, seen, params)
    if not fresh and h0.held < params.max_hold:
        return p, _held(state, seen, params)
    new_p, after = _rule(p, supply, demand, state, params)
    cur, new = (p.upload, p.download), (new_p.upload, new_p.download)
    if fresh:
        drift = holding.moved(cur, new)
    else:
        new, drift = holding.bound_move(cur, new, h0.drift, params.max_step)
        if new == cur:  # already ×2 from where the market last answered
            return p, _held(state, seen, params)
        new_p = Resources(1.0, *new)
    return new_p, replace(after, hold=holding.Hold(seen=seen, drift=drift, last=seen,
                                                   noise=h0.noise))


def _answered(state: UpdateState, seen: holding.Seen, params: Params) -> bool:
    limit = holding.threshold(state.hold, params.respond_tol, params.noise_z, params.noise0)
    return holding.answered(state.hold, seen, limit, _expected(state, params))


def _expected(state: UpdateState, params: Params) -> float:
    """The answer (in h) the last move asked for, from slopes the data measured; a slope
    at its floor measured nothing (perhaps a market that does not answer): infinite."""
    if state.rule != "safe" or min(state.slope) <= params.min_slope:
        return math.inf
    return max(abs(state.slope[i] * state.hold.drift[i]) for i in range(2))


def floor_supply(supply: Resources, demand: Resources, share: float) -> Resources:
    """S with every zero component raised to `share` of the largest buffer S_X/d_X: a
    resource nobody supplies yet is very scarce, not unmeasurable."""
    s, d = supply.as_tuple(), demand.as_tuple()
    best = max(a / b for a, b in zip(s, d, strict=True))
    return Resources(*(max(a, share * best * b) for a, b in zip(s, d, strict=True)))


def _held(state: UpdateState, seen: holding.Seen, params: Params) -> UpdateState:
    """The state after one more day held (the day after it measures the noise: the first
    held day's own change still carries the move's answer)."""
    h = state.hold
    return replace(state, hold=replace(h, held=h.held + 1, last=seen))


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
    flips = 0
    for i in range(2):
        slope, cap, flipped = _measure(x[i], hv[i], state, i, params)
        # a flip while the other resource is much farther from balance is what the
        # other's move did to this one (budgets and eq. 4 tie them), not a sign of a lag
        flips += flipped and params.cross * abs(hv[i]) >= abs(hv[1 - i])
        slopes.append(slope)
        caps.append(cap)
    since = 0 if flips else state.since + 1
    overshoots = state.overshoots if state.since <= params.lag_window else 0
    overshoots += bool(flips)
    lagging, calm = _lag(hv, state, overshoots, flips, params)
    if state.lagging and not lagging:
        overshoots = 0
    for i in range(2):
        if lagging:
            steps.append(_clip(-params.eta * hv[i], params.max_step))
        else:
            steps.append(_clip(-hv[i] / slopes[i], caps[i]))
    steps = _untie(hv, state.value, steps, params)
    new = Resources(1.0, math.exp(x[0] + steps[0]), math.exp(x[1] + steps[1]))
    return new, replace(state, p=cur, value=hv, slope=(slopes[0], slopes[1]),
                        cap=(caps[0], caps[1]), overshoots=overshoots, lagging=lagging,
                        calm=calm, since=since)


def _lag(hv: Pair, state: UpdateState, overshoots: int, flips: int,
         params: Params) -> tuple[bool, int]:
    """(lagging, calm days) after today: `lag_after` overshoots, each within `lag_window`
    days of the one before, mean a lagging market; in damped mode, `calm` days in a row
    of progress without a flip mean it answers again."""
    if not state.lagging:
        return overshoots >= params.lag_after, 0
    prev = state.value
    better = prev is not None and not flips and max(map(abs, hv)) <= max(map(abs, prev))
    calm = state.calm + 1 if better else 0
    if calm >= params.calm:
        return False, 0
    return True, calm


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


# The coordinator's daily job: S is caps that only users move, while availability
# estimates drift; until held days measured that drift, assume it is 1/noise_z of 1%
# a day (a move answered by less than 1% is then held, as long as its expected answer
# was larger than that).
COORDINATOR = Params(noise0=0.01 / 3.0)
