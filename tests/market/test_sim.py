"""The simulated users (Definition 1) and the market loop (§5.2), on small economies."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.market.agents import (
    closed_form,
    make_economy,
    solve_agent,
    solve_batch,
    subset,
    supply_at,
    violations,
)
from p2pbak.market.ces import log_utility
from p2pbak.market.simulate import equilibrium, far_start, simulate
from p2pbak.market.sweep import (
    Setup,
    check_uniqueness,
    effective_tol,
    path_bound,
    round_bound,
    summarise,
    sweep,
)

SMALL = make_economy(12, seed=5)
log_price = st.floats(min_value=-7.0, max_value=7.0)


def _utility(e, p: np.ndarray, supply: np.ndarray) -> np.ndarray:
    z = supply / e.endowment
    t = supply @ p / (e.need @ p)
    return log_utility(e.weights, e.rho, np.column_stack([1 - z, t]))


def _assert_ump_constraints(e, p: np.ndarray, s: np.ndarray) -> None:
    """(1)-(5) of Definition 1 for every agent."""
    keep = e.endowment - s  # (1)
    assert (keep >= -1e-9 * e.endowment).all() and (s >= -1e-9 * e.endowment).all()  # (5)
    t = s @ p / (e.need @ p)  # (2): D_i = t·d_i costs exactly S_i·p
    assert (t >= 1 - 1e-7).all()  # (3)
    for x in range(3):
        for y in range(3):  # (4)
            assert (s[:, x] <= e.ratio[x, y] * s[:, y] * (1 + 1e-6) + 1e-12).all()


@settings(max_examples=15, deadline=None)
@given(st.floats(-0.9, 0.9), st.integers(0, 1000))
def test_closed_form_agrees_with_scipy_where_nothing_binds(rho: float, seed: int) -> None:
    e = make_economy(10, seed=seed, rho=rho, slack=50.0)
    p = np.array([1.0, *equilibrium_guess(e)])
    x = closed_form(e, p)
    s = e.endowment - x[:, :3]
    free = np.flatnonzero(~violations(e, p, s))
    assert free.size > 0
    for i in free[:4]:
        assert solve_agent(e, int(i), p) == pytest.approx(s[i], rel=3e-4)  # the solver's tolerance


def equilibrium_guess(e) -> tuple[float, float]:
    """p_X = d_S/d_X: every resource's demand worth the same (near the equilibrium)."""
    return (float(e.demand[0] / e.demand[1]), float(e.demand[0] / e.demand[2]))


@settings(max_examples=20, deadline=None)
@given(log_price, log_price, st.sampled_from([0.5, 0.0, -1.0]))
def test_every_choice_meets_definition_1(lu: float, ld: float, rho: float) -> None:
    e = make_economy(12, seed=3, rho=rho)
    p = np.array([1.0, math.exp(lu), math.exp(ld)])
    s = supply_at(e, p)
    _assert_ump_constraints(e, p, s)
    assert not violations(e, p, s).any()


@settings(max_examples=10, deadline=None)
@given(log_price, log_price)
def test_barrier_solver_matches_scipy_where_constraints_bind(lu: float, ld: float) -> None:
    p = np.array([1.0, math.exp(lu), math.exp(ld)])
    fast = solve_batch(SMALL, p)
    ref = np.array([solve_agent(SMALL, i, p) for i in range(SMALL.n)])
    _assert_ump_constraints(SMALL, p, fast)
    # the same optimum: utilities agree, neither solver beats the other
    assert _utility(SMALL, p, fast) == pytest.approx(_utility(SMALL, p, ref), abs=1e-7)


def test_choice_beats_feasible_alternatives() -> None:
    e, p = SMALL, np.array([1.0, 3.0, 0.5])
    s = supply_at(e, p)
    best = _utility(e, p, s)
    rng = np.random.default_rng(0)
    for _ in range(200):
        other = np.clip(s * np.exp(rng.normal(0, 0.2, s.shape)), 0, e.endowment * 0.999)
        ok = ~violations(e, p, other)
        assert (_utility(e, p, other)[ok] <= best[ok] + 1e-9).all()


def test_subset_keeps_market_demand() -> None:
    part = subset(SMALL, np.array([0, 3]))
    assert part.n == 2
    assert part.demand == pytest.approx(SMALL.demand)


def test_prices_must_be_positive_and_economy_valid() -> None:
    with pytest.raises(ValueError):
        supply_at(SMALL, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError):
        make_economy(10, rho=1.0)
    with pytest.raises(ValueError):
        simulate(SMALL, (1.0, 1.0), lag=0.0)


ECON = make_economy(20, seed=11)
P_STAR = equilibrium(ECON)


def test_equilibrium_has_equal_buffers_and_is_unique() -> None:
    starts = [far_start(P_STAR, 30.0, a) for a in (0.3, 2.0, 4.0)] + [(1.0, 1.0)]
    u = check_uniqueness(ECON, starts)
    assert u.spread < 1e-5
    assert u.buffers[1] == pytest.approx(u.buffers[0], rel=1e-6)  # Definition 2
    assert u.buffers[2] == pytest.approx(u.buffers[0], rel=1e-6)
    assert min(u.buffers) > 1  # a buffer: supply exceeds demand in every resource


@pytest.mark.parametrize("angle", [0.4, 2.2, 3.9, 5.5])
def test_safe_rule_converges_from_far_within_bound(angle: float) -> None:
    start = far_start(P_STAR, 1000.0, angle)
    run = simulate(ECON, start, rounds=60, rule="safe")
    assert run.converged and not run.negative
    assert run.converged_round <= path_bound(P_STAR, start) <= 2 * round_bound(1000.0)
    assert run.final == pytest.approx(P_STAR, rel=0.01)


def test_paper_rule_converges_near_and_fails_far() -> None:
    near = simulate(ECON, far_start(P_STAR, 1.3, 0.7), rounds=40, rule="paper")
    assert near.converged
    far = [simulate(ECON, far_start(P_STAR, 100.0, a), rounds=40, rule="paper")
           for a in (0.4, 2.2, 3.9, 5.5)]
    assert not all(r.converged for r in far)
    assert any(r.negative for r in far)


def test_lagging_market_needs_the_damped_step() -> None:
    run = simulate(ECON, far_start(P_STAR, 10.0, 1.0), rounds=100, rule="safe", lag=0.3,
                   seed=2)
    assert run.converged and run.lagging
    paper = simulate(ECON, far_start(P_STAR, 2.0, 1.0), rounds=100, rule="paper",
                     lag=0.3, seed=2)
    assert not paper.converged


def test_noise_converges_to_the_noise_floor() -> None:
    tol = effective_tol(1e-3, 0.01)
    assert tol == 0.02
    run = simulate(ECON, far_start(P_STAR, 100.0, 2.0), rounds=100, rule="safe",
                   noise=0.01, seed=4, tol=tol)
    assert run.converged


def test_sweep_rows() -> None:
    rows = sweep([3.0], trials=2, setup=Setup(agents=10, rounds=30))
    assert [r.update for r in rows] == ["paper", "safe"]
    safe = rows[1].to_dict()
    assert set(safe) >= {"update", "factor", "trials", "converged", "median_rounds",
                         "max_rounds", "negative_prices"}
    assert safe["trials"] == 2 and safe["converged"] == 2
    empty = summarise("paper", 10.0, [])
    assert empty.median_rounds is None and empty.converged == 0
    assert round_bound(1e4) == 20 and round_bound(2.0) == 7
    assert path_bound((1.0, 1.0), (8.0, 1 / 4)) == 3 + 2 + 6


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_kept_resources_are_gross_substitutes(rho: float) -> None:
    # Assumption 3 in excess-demand form: a dearer resource is supplied more, the others less
    e = make_economy(12, seed=8, rho=rho)
    p = np.array([1.0, *equilibrium_guess(e)])
    base = supply_at(e, p).sum(axis=0)
    for dear in range(3):
        q = p.copy()
        q[dear] *= 1.1
        change = supply_at(e, q).sum(axis=0) - base
        for k in range(3):
            assert (change[k] > 0) == (k == dear)
