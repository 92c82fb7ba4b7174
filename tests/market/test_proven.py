"""The proven-supply rule (market.proven): counted supply never exceeds the caps nor proven
work plus headroom, grows with proof, and one peer declaring huge caps that move 2% a day
moves g(p) (what drives the price update) by no more than its proven supply allows."""

from __future__ import annotations

from dataclasses import astuple

from hypothesis import given
from hypothesis import strategies as st

from p2pbak.market.caps import supply_from_caps
from p2pbak.market.equilibrium import aggregate, g
from p2pbak.market.proven import (
    RATE_FLOOR,
    SPACE_FLOOR,
    Caps,
    Counted,
    Proven,
    counted,
    counted_caps,
    lowest,
    share_bound,
)
from p2pbak.market.resources import Resources
from p2pbak.units import DAY, GB

amounts = st.integers(0, 10**13)
caps = st.builds(Caps, st.none() | amounts, st.none() | st.integers(1, 10**9),
                 st.none() | st.integers(1, 10**9))


@given(st.floats(1, 1e15), st.floats(0, 1e15), st.floats(1, 1e12))
def test_counted_is_capped_by_caps_and_by_proof(cap: float, proof: float, floor: float) -> None:
    c = counted(cap, proof, floor)
    assert c <= cap and c <= proof + max(floor, proof)
    assert c >= min(cap, floor)  # a new peer can always be given its first fragments
    assert counted(cap, proof * 2, floor) >= c  # more proof never counts less


@given(caps, caps, caps)
def test_lowest_takes_each_resource_at_its_lowest_set_cap(a: Caps, b: Caps, c: Caps) -> None:
    low = lowest(a, b, c)
    for field in ("space", "upload", "download"):
        values = [getattr(x, field) for x in (a, b, c)]
        set_ = [v for v in values if v is not None]  # None is no cap, 0 a cap of zero
        assert getattr(low, field) == (min(set_) if set_ else None)


def _vector(c: Counted, availability: float) -> Resources:
    return supply_from_caps(c.space, c.upload, c.download, availability)


honest_peer = st.tuples(st.integers(10**9, 10**12), st.integers(10**4, 10**7),
                        st.integers(10**4, 10**7), st.floats(0.2, 1.0))


@given(st.lists(honest_peer, min_size=1, max_size=8), st.integers(0, 40 * GB),
       st.integers(0, 10**10), st.integers(10**14, 10**16), st.floats(0.2, 1.0),
       st.integers(1, 10))
def test_a_liar_moving_huge_caps_two_percent_a_day_moves_g_only_by_its_proof(
        honest: list[tuple[int, int, int, float]], proof: int, served: int, declared: int,
        availability: float, days: int) -> None:
    others = aggregate(_vector(Counted(s, u, d), a) for s, u, d, a in honest)
    demand = Resources(others.space, others.upload * 1.3, others.download * 0.7)
    work = Proven(space=proof, upload=served, download=served)
    history = [Caps(int(declared * 1.02**i), int(10**9 * 1.02**i), int(10**9 * 1.02**i))
               for i in range(days)]
    liar = _vector(counted_caps(lowest(*history), work, DAY, availability, 0), availability)
    # what the proof alone allows, whatever the caps: proven + headroom in each resource
    online = DAY * availability
    bound = _vector(Counted(proof + max(SPACE_FLOOR, proof),
                         int(served / online + max(RATE_FLOOR, served / online)) + 1,
                         int(served / online + max(RATE_FLOOR, served / online)) + 1),
                    availability)
    assert liar.space <= bound.space * (1 + 1e-9)
    with_liar = g(aggregate([others, liar]), demand)
    without = g(others, demand)
    limit = share_bound(others.as_tuple(), bound.as_tuple())
    for x in range(2):
        assert abs(with_liar[x] - without[x]) <= limit[x] * (1 + 1e-9) + 1e-12
    # and the declared petabytes would have swamped it: counted is far below declared
    assert liar.space < _vector(Counted(*astuple(history[0])), availability).space / 1000
