"""choose_code / replication_copies / prob_at_least (paper §2.2)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.errors import P2pbakError
from p2pbak.market.erasure import (
    NotEnoughPeers,
    choose_code,
    min_n_for_k,
    prob_at_least,
    replication_copies,
)


def test_paper_figures() -> None:
    assert replication_copies(0.5) == 17  # §2.2: "approx. 17 replications"
    code = choose_code([0.5] * 256)
    assert (code.k, code.n) == (64, 185)
    assert code.meets_target
    assert round(code.factor, 2) == 2.89
    assert choose_code([0.5] * 256, max_k=32).n == 107  # 3.34
    assert 0.99999 <= code.availability < 1


def test_replication_boundary() -> None:
    # 1 - 0.5^c >= 0.99999 first holds at c = 17, not 16.
    assert 1 - 0.5**16 < 0.99999 <= 1 - 0.5**17
    assert replication_copies(0.9, 0.99) == 2
    assert replication_copies(0.99, 0.9) == 1


def brute_prob(k: int, avail: list[float]) -> float:
    total = 0.0
    for states in itertools.product([0, 1], repeat=len(avail)):
        if sum(states) >= k:
            total += math.prod(a if s else 1 - a for s, a in zip(states, avail, strict=True))
    return total


@given(st.lists(st.floats(0.01, 0.99), min_size=1, max_size=9), st.integers(0, 10))
def test_poisson_binomial_matches_enumeration(avail: list[float], k: int) -> None:
    assert prob_at_least(k, avail) == pytest.approx(brute_prob(k, avail), abs=1e-12)


def codes(peers: int, max_k: int, max_factor: float) -> list[tuple[int, int]]:
    return [(k, n) for k in range(1, max_k + 1) for n in range(1, min(peers, 256) + 1)
            if 3 * k <= 2 * n and n <= k * max_factor + 1e-9]


@settings(max_examples=60, deadline=None)
@given(avail=st.lists(st.floats(0.05, 0.98), min_size=2, max_size=40),
       target=st.sampled_from([0.9, 0.99, 0.999, 0.99999]),
       max_k=st.integers(1, 20), max_factor=st.sampled_from([2.0, 2.5, 3.0, 4.0]))
def test_choose_code_properties(avail: list[float], target: float, max_k: int,
                                max_factor: float) -> None:
    code = choose_code(avail, target=target, max_k=max_k, max_factor=max_factor)
    assert code.n <= 256 and code.n <= len(avail) and code.total == code.n
    assert 3 * code.k <= 2 * code.n  # survives losing a third of its holders
    assert code.k <= max_k and code.factor <= max_factor + 1e-9
    assert code.k < code.repair <= code.n or code.repair == code.n
    assert code.k < code.success <= code.n
    if code.repair < code.n:
        assert code.repair <= code.success  # a fresh upload is never already due for repair
    elif code.n - code.k >= 2 and min_n_for_k(code.k) < code.n:
        assert code.success < code.n  # an upload does not need every one of the n peers
    assert code.availability == pytest.approx(prob_at_least(code.k, avail[:code.n]))
    allowed = codes(len(avail), max_k, max_factor)
    meeting = [(n / k, k, n) for k, n in allowed if prob_at_least(k, avail[:n]) >= target]
    assert code.meets_target == bool(meeting)
    if meeting:
        assert code.factor == pytest.approx(min(f for f, _, _ in meeting))
    else:
        best = max(prob_at_least(k, avail[:n]) for k, n in allowed)
        assert code.availability == pytest.approx(best)


def test_small_grid_flags_and_keeps_a_third() -> None:
    code = choose_code([0.5] * 10)
    assert not code.meets_target
    assert code.factor <= 4 and 3 * code.k <= 2 * code.n
    assert (code.k, code.n) == (2, 8)  # P(>=2 of 8) = 0.965 beats every other code
    # Very reliable peers: even a small grid meets the target.
    reliable = choose_code([0.999] * 12)
    assert reliable.meets_target and reliable.availability >= 0.99999


def test_bad_input() -> None:
    with pytest.raises(NotEnoughPeers):
        choose_code([0.5])
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(P2pbakError):
            replication_copies(bad)
        with pytest.raises(P2pbakError):
            choose_code([0.5] * 5, target=bad)
    with pytest.raises(P2pbakError):
        choose_code([0.5] * 5, max_factor=1.5)


def test_min_n_for_k() -> None:
    assert [min_n_for_k(k) for k in (1, 2, 3, 4, 64)] == [2, 3, 5, 6, 96]
