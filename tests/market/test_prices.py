"""Prices, services and supply rules (§2.2, §2.5, §3.1, eq. 2-4)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.market.prices import (
    Overheads,
    consume_to_earn_ratio,
    effective_space,
    repair_load,
    resources_needed,
    service_prices,
)
from p2pbak.market.resources import Resources, Services, prices
from p2pbak.market.supply import (
    DEFAULT_MIX,
    RatioLimits,
    affords,
    backup_balance,
    caps_to_supply,
    effective_supply,
    max_backup_space,
    max_services,
    slider_regions,
)

pos = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


def test_effective_space_matches_paper_example() -> None:
    assert effective_space(30.0, 0.5) == pytest.approx(10.0)


@pytest.mark.parametrize("factor", [185 / 64, 3.0, 107 / 32])
def test_twelve_hour_user_pays_about_three_times_what_they_earn(factor: float) -> None:
    o = Overheads(factor=factor, holder_availability=0.5)
    ratio = consume_to_earn_ratio(prices(0.2, 0.1), o, availability=0.5)
    assert 2.8 <= ratio <= 3.5
    # without repair load it is exactly the erasure factor
    bare = consume_to_earn_ratio(prices(0.2, 0.1), Overheads(factor=factor, repair=0.0), 0.5)
    assert bare == pytest.approx(factor)


def test_better_holders_cost_more_space_per_gb() -> None:
    low = service_prices(prices(1, 1), Overheads(holder_availability=0.5)).storage
    high = service_prices(prices(1, 1), Overheads(holder_availability=0.9)).storage
    assert high > low


@given(pos, pos, pos, pos, pos, st.floats(1.0, 10.0), st.floats(0.0, 0.1))
def test_service_prices_are_transpose_of_resource_needs(
        pu: float, pd: float, b: float, s: float, r: float, f: float, rep: float) -> None:
    o = Overheads(factor=f, repair=rep)
    p, d = prices(pu, pd), Services(b, s, r)
    assert d.dot(service_prices(p, o)) == pytest.approx(p.dot(resources_needed(d, o)),
                                                          rel=1e-9)


def test_repair_load_formula() -> None:
    # 0.2%/day loss, factor 3, rebuild half a pack per repair: 0.002*3*1.5/0.5
    assert repair_load(0.002, 3.0, 0.5) == pytest.approx(0.018)
    with pytest.raises(ValueError):
        repair_load(0.01, 3.0, 0.0)


def test_invalid_overheads_rejected() -> None:
    with pytest.raises(ValueError):
        Overheads(factor=0.5)


@given(pos, pos, pos, pos, pos)
def test_flow_constraint_holds_for_max_services(s: float, u: float, d: float, pu: float,
                                                pd: float) -> None:
    o, p, supply = Overheads(), prices(pu, pd), Resources(s, u, d)
    bought = max_services(supply, p, o, DEFAULT_MIX)
    assert bought.dot(service_prices(p, o)) == pytest.approx(supply.dot(p), rel=1e-9)
    # perfect complements: the user's own B:S:R mix (Assumption 2)
    assert bought.backup / bought.storage == pytest.approx(DEFAULT_MIX.backup, rel=1e-9)
    assert affords(supply, bought, p, o)
    assert not affords(supply, bought.scale(1.01), p, o)


def test_max_backup_space_scales_with_supply_and_is_zero_without() -> None:
    o, p = Overheads(), prices(0.3, 0.2)
    one = max_backup_space(Resources(10, 1, 1), p, o)
    assert max_backup_space(Resources(20, 2, 2), p, o) == pytest.approx(2 * one)
    assert max_backup_space(Resources(0, 0, 0), p, o) == 0


def test_caps_to_supply_units() -> None:
    # 30 GB at 50%: 10 effective GB; 1 MB/s up online half the day: 43.2 GB/day
    s = caps_to_supply(30 * 10**9, 1e6, 2e6, availability=0.5)
    assert s.space == pytest.approx(10.0)
    assert s.upload == pytest.approx(43.2)
    assert s.download == pytest.approx(86.4)


LIMITS = RatioLimits.from_demand(Resources(100.0, 2.0, 5.0), slack=4.0)
caps_st = st.builds(Resources, st.floats(0.01, 1e4), st.floats(0.01, 1e3),
                    st.floats(0.01, 1e3))


def test_ratio_limits_from_demand() -> None:
    assert LIMITS.r[0][1] == pytest.approx(4 * 100 / 2)  # S_S ≤ r_SU·S_U
    assert LIMITS.r[1][0] == pytest.approx(4 * 2 / 100)
    with pytest.raises(ValueError):
        RatioLimits.from_demand(Resources(1, 0, 1))


@given(caps_st)
def test_effective_supply_is_largest_allowed_below_caps(caps: Resources) -> None:
    eff = effective_supply(caps, LIMITS)
    assert LIMITS.allows(eff)
    assert all(e <= c * (1 + 1e-12) for e, c in zip(eff.as_tuple(), caps.as_tuple(),
                                                      strict=True))
    # already allowed caps are kept whole
    assert effective_supply(eff, LIMITS) == pytest.approx(eff)


def test_paper_example_space_beyond_upload_buys_nothing() -> None:
    # §3.1: with upload capped low, going from 50 GB to 100 GB of space buys nothing
    p, o = prices(0.5, 0.5), Overheads()
    caps50, caps100 = Resources(50, 0.1, 10), Resources(100, 0.1, 10)
    b50 = backup_balance(caps50, p, o, LIMITS, in_use_gb=5.0)
    b100 = backup_balance(caps100, p, o, LIMITS, in_use_gb=5.0)
    assert b50.total == pytest.approx(b100.total)
    assert b50.regions.space < 50  # the thick line ends before the slider
    assert b50.available == pytest.approx(b50.total - 5.0)


@given(caps_st, st.floats(1.01, 10.0))
def test_raising_a_slider_beyond_its_region_buys_nothing(caps: Resources,
                                                         extra: float) -> None:
    p, o = prices(0.4, 0.3), Overheads()
    region = slider_regions(caps, LIMITS)
    for i in range(3):
        at = list(caps.as_tuple())
        at[i] = region.as_tuple()[i]
        beyond = list(at)
        beyond[i] *= extra
        b_at = max_backup_space(effective_supply(Resources(*at), LIMITS), p, o)
        b_beyond = max_backup_space(effective_supply(Resources(*beyond), LIMITS), p, o)
        assert b_beyond == pytest.approx(b_at, rel=1e-9)


@given(caps_st, st.floats(0.1, 0.9))
def test_raising_a_slider_inside_its_region_buys_more(caps: Resources, frac: float) -> None:
    p, o = prices(0.4, 0.3), Overheads()
    region = slider_regions(caps, LIMITS)
    for i in range(3):
        lo, hi = list(caps.as_tuple()), list(caps.as_tuple())
        lo[i] = region.as_tuple()[i] * frac * 0.5
        hi[i] = region.as_tuple()[i] * frac
        b_lo = max_backup_space(effective_supply(Resources(*lo), LIMITS), p, o)
        b_hi = max_backup_space(effective_supply(Resources(*hi), LIMITS), p, o)
        assert b_hi > b_lo


@given(caps_st, st.floats(1.5, 10.0))
def test_raising_one_slider_widens_the_others_regions(caps: Resources, k: float) -> None:
    before = slider_regions(caps, LIMITS)
    for i in range(3):
        raised = list(caps.as_tuple())
        raised[i] *= k
        after = slider_regions(Resources(*raised), LIMITS)
        for j in range(3):
            if j != i:
                assert after.as_tuple()[j] >= before.as_tuple()[j]
        # and a region grows strictly when cap i alone is what limits it
        for j in range(3):
            if j == i:
                continue
            terms = {y: LIMITS.r[j][y] * caps.as_tuple()[y] for y in range(3) if y != j}
            other = min(v for y, v in terms.items() if y != i)
            if terms[i] < other and not math.isclose(terms[i], other):
                assert after.as_tuple()[j] > before.as_tuple()[j]


def test_balance_to_dict_keys() -> None:
    b = backup_balance(Resources(10, 1, 1), prices(1, 1), Overheads(), LIMITS, 100.0)
    assert b.available == 0.0  # using more than the caps buy: nothing more available
    assert set(b.to_dict()) == {"in_use_gb", "total_gb", "available_gb", "effective",
                                "regions"}
