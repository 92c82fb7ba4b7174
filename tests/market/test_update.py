"""g(p), h(p) and the price update rules (§4.3 Definition 3, §5.1 Definition 4)."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.market.equilibrium import buffers, g, h, relative_gap
from p2pbak.market.hold import Hold
from p2pbak.market.resources import Resources, prices
from p2pbak.market.update import LN2, Params, UpdateState, held_reason, new_state, update

pos = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)
vec = st.builds(Resources, pos, pos, pos)
scale = st.floats(min_value=1e-3, max_value=1e3)


def test_g_and_h_vanish_exactly_at_equal_buffers() -> None:
    d = Resources(100, 2, 5)
    s = d.scale(1.7)
    assert g(s, d) == pytest.approx((0, 0), abs=1e-12)
    assert h(s, d) == pytest.approx((0, 0), abs=1e-12)
    assert relative_gap(s, d) == pytest.approx(0, abs=1e-12)
    assert buffers(s, d).as_tuple() == pytest.approx((1.7, 1.7, 1.7))
    off = Resources(170, 3.4 * 2, 8.5)  # twice the upload buffer
    assert g(off, d)[0] == pytest.approx(2 * 2 / 100 - 2 / 100)
    assert h(off, d)[0] == pytest.approx(math.log(2))
    assert relative_gap(off, d) == pytest.approx(1.0)


def test_g_rejects_empty_aggregates() -> None:
    with pytest.raises(ValueError):
        g(Resources(0, 1, 1), Resources(1, 1, 1))


def _run(rule: str, p: Resources, s: Resources, d: Resources, steps: int) -> list[Resources]:
    """Feed the same (S, d) pairs from a fixed sequence; collect prices."""
    state, out = None, []
    for k in range(steps):
        bump = Resources(s.space, s.upload * (1 + 0.1 * k), s.download / (1 + 0.05 * k))
        p, state = update(p, bump, d, state, rule)
        out.append(p)
    return out


@given(vec, vec, scale, scale, st.sampled_from(["paper", "safe"]))
def test_update_is_invariant_to_scaling_supply_and_demand(s: Resources, d: Resources,
                                                           a: float, b: float,
                                                           rule: str) -> None:
    p0 = prices(0.7, 1.3)
    plain = _run(rule, p0, s, d, 4)
    scaled = _run(rule, p0, s.scale(a), d.scale(b), 4)
    for x, y in zip(plain, scaled, strict=True):
        assert x.as_tuple() == pytest.approx(y.as_tuple(), rel=1e-6)


def test_paper_rule_is_definition_4() -> None:
    d = Resources(1, 1, 1)
    state = UpdateState(rule="paper", p=(1.0, 1.0), value=(0.5, -0.5))
    # g now (0.25, -0.25) at p = (2, 3): p_X - (p_X - p'_X)/(g_X - g'_X)·g_X
    p, _ = update(prices(2.0, 3.0), Resources(1, 1.25, 0.75), d, state)
    assert p.upload == pytest.approx(2 - (2 - 1) / (0.25 - 0.5) * 0.25)
    assert p.download == pytest.approx(3 - (3 - 1) / (-0.25 + 0.5) * -0.25)
    assert p.space == 1.0


def test_paper_rule_equal_g_does_not_divide_by_zero() -> None:
    d, s = Resources(1, 1, 1), Resources(1, 1.5, 0.5)
    state = UpdateState(rule="paper", p=(1.0, 1.0), value=g(s, d))
    p, state2 = update(prices(2.0, 2.0), s, d, state)
    # probe step against the sign of g: upload too plentiful → cheaper, download dearer
    assert p.upload == pytest.approx(2 * math.exp(-0.1))
    assert p.download == pytest.approx(2 * math.exp(0.1))
    assert state2.p == (2.0, 2.0)


def test_paper_rule_can_go_negative_far_from_root() -> None:
    # a shallow secant from two far-off days overshoots below zero (§5.2's failure)
    d = Resources(1, 1, 1)
    state = UpdateState(rule="paper", p=(0.03, 0.03), value=(0.50, 0.50))
    p, _ = update(prices(0.02, 0.02), Resources(1, 1.49, 1.49), d, state)
    assert p.upload < 0


@given(st.lists(st.tuples(pos, pos, pos), min_size=1, max_size=30),
       st.floats(1e-6, 1e6), st.floats(1e-6, 1e6))
def test_safe_rule_never_gives_non_positive_prices_and_caps_steps(
        supplies: list[tuple[float, float, float]], pu: float, pd: float) -> None:
    p, state, d = prices(pu, pd), None, Resources(1, 1, 1)
    for s in supplies:
        new, state = update(p, Resources(*s), d, state, "safe")
        assert new.upload > 0 and new.download > 0 and new.space == 1.0
        for a, b in ((p.upload, new.upload), (p.download, new.download)):
            assert abs(math.log(b / a)) <= LN2 + 1e-12
        p = new


def _linear_market(p: Resources) -> Resources:
    """A settled market whose relative supply rises with own price (h = ln p - ln p*)."""
    return Resources(1.0, p.upload / 5.0, p.download / 0.02)


def test_safe_rule_converges_from_far_on_settled_market() -> None:
    p, state, d = prices(5e4, 1e-6), None, Resources(1, 1, 1)
    days = 0
    while relative_gap(_linear_market(p), d) >= 1e-6 and days < 40:
        p, state = update(p, _linear_market(p), d, state, "safe")
        days += 1
    assert days <= math.ceil(math.log(1e4) / LN2) + 6
    assert p.upload == pytest.approx(5.0, rel=1e-5)
    assert p.download == pytest.approx(0.02, rel=1e-5)
    assert not state.lagging


def test_safe_rule_detects_lagging_market_and_damps() -> None:
    # supply that answers only 20% of the way each day: secant slopes measured too shallow
    p, state, d = prices(20.0, 20.0), None, Resources(1, 1, 1)
    seen = _linear_market(p)
    for _ in range(200):
        target = _linear_market(p)
        seen = Resources(1.0, *(math.exp(0.8 * math.log(a) + 0.2 * math.log(b))
                                for a, b in ((seen.upload, target.upload),
                                             (seen.download, target.download))))
        p, state = update(p, seen, d, state, "safe")
    assert state.lagging
    assert relative_gap(_linear_market(p), d) < 1e-3


def test_state_round_trips_through_json() -> None:
    s = UpdateState(rule="safe", p=(0.5, 2.0), value=(0.1, -0.2), slope=(1.5, 0.7),
                    cap=(0.3, 0.6), overshoots=1, lagging=True,
                    hold=Hold(seen=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0), held=2, drift=(0.5, -0.1)))
    back = UpdateState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert UpdateState.from_dict({"rule": "paper"}) == new_state("paper")
    with pytest.raises(ValueError):
        UpdateState.from_dict({"rule": "walras"})
    with pytest.raises(ValueError):
        new_state("walras")


def test_safe_cap_halves_on_overshoot() -> None:
    d = Resources(1, 1, 1)
    st0 = new_state("safe", Params())
    p1, st1 = update(prices(1, 1), Resources(1, 2.0, 1.0), d, st0)
    # next day upload swung to the other side, no better: cap halves
    _, st2 = update(p1, Resources(1, 0.4, 1.0), d, st1)
    assert st2.cap[0] == pytest.approx(LN2 / 2)
    assert st2.overshoots == 1


def test_empty_market_holds_prices() -> None:
    p = prices(0.5, 2.0)
    for rule in ("paper", "safe"):
        new, state = update(p, Resources(10, 1, 1), Resources(5, 0, 1), None, rule)
        assert new == p and state == new_state(rule)


def _tied(hu: float) -> Resources:
    """S with h = (hu, 0) against d = (1, 1, 1)."""
    return Resources(1.0, math.exp(hu), 1.0)


def test_tied_coordinate_moves_against_the_one_that_ties_it() -> None:
    # upload at its ratio limit (h_U = ln 4) drags download to exactly h_D = 0 (eq. 4):
    # from the second such day on, download moves opposite to upload by the same factor
    d, p, state = Resources(1, 1, 1), prices(100.0, 1.0), None
    p, state = update(p, _tied(math.log(4)), d, state)
    assert p.download == 1.0  # one day of h_D = 0 is no tie yet
    for day in range(5):
        before = p
        hu = math.log(4) + 1e-4 * (day + 1)  # supply creeps: the market does answer
        p, state = update(p, _tied(hu), d, state)
        assert p.upload < before.upload
        assert p.download / before.download == pytest.approx(before.upload / p.upload)


def test_a_price_reaching_its_root_once_is_not_pushed() -> None:
    d, state = Resources(1, 1, 1), None
    p, state = update(prices(2.0, 1.0), Resources(1.0, 1.5, 3.0), d, state)
    moved = p.upload
    p, state = update(p, Resources(1.0, 1.0, 2.5), d, state)  # h_U hit 0 exactly today
    assert p.upload == pytest.approx(moved)


@given(vec, vec, st.floats(1e-3, 1e3), st.floats(1e-3, 1e3),
       st.sampled_from(["paper", "safe"]))
def test_market_that_never_answers_moves_at_most_once_per_hold(
        s: Resources, d: Resources, pu: float, pd: float, rule: str) -> None:
    params, start, state = Params(), prices(pu, pd), None
    p, moves = start, 0
    for _ in range(60):
        new, state = update(p, s, d, state, rule, params)
        moves += new != p
        assert new == p or not held_reason(state, params)
        p = new
    assert moves <= 1 + 60 // (params.max_hold + 1)
    for a, b in ((start.upload, p.upload), (start.download, p.download)):
        assert abs(math.log(b / a)) <= LN2 + 1e-9  # within ×2 of the start


def test_hold_ends_when_the_market_answers() -> None:
    d, s = Resources(1, 1, 1), Resources(1.0, 2.0, 0.5)
    p1, state = update(prices(1, 1), s, d)
    assert p1 != prices(1, 1) and held_reason(state) == ""
    for n in (1, 2, 3):
        p, state = update(p1, s, d, state)
        assert p == p1 and held_reason(state).startswith(f"held: no response since last move ({n}")
    answered = Resources(1.0, 1.6, 0.6)  # users moved their sliders
    p2, state = update(p1, answered, d, state)
    assert p2 != p1 and state.hold.held == 0 and held_reason(state) == ""
    # the secant spans the hold: from the day of the last move to today
    assert state.slope[0] == pytest.approx(
        (math.log(1.6) - math.log(2.0)) / math.log(p1.upload), rel=1e-9)


def test_a_coarser_tolerance_holds_through_drift_but_not_through_an_answer() -> None:
    params, d = Params(respond_tol=0.01), Resources(1, 1, 1)
    p1, state = update(prices(1, 1), Resources(1.0, 2.0, 0.5), d, params=params)
    p, state = update(p1, Resources(1.0, 2.0 * 1.005, 0.5), d, state, params=params)
    assert p == p1 and state.hold.held == 1  # 0.5%: an availability estimate drifting
    p, state = update(p1, Resources(1.0, 2.0 * 1.02, 0.5), d, state, params=params)
    assert p != p1 and state.hold.held == 0  # 2%: an answer
