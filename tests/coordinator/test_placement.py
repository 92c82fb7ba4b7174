"""Properties of the pure placement rules (p2pbak.coordinator.placement)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.coordinator import placement
from p2pbak.store.db.peers import Peer


def peer(i: int, free: int, subnet: str = "127.0.0.0/24", avail: float = 0.5) -> Peer:
    return Peer(id=f"{i:032x}", url=f"http://x/{i}", subnet=subnet, space=free, upload=1,
                download=1, stored_bytes=0, free_bytes=free, first_seen=0, last_seen=0,
                availability=avail, reputation=1.0, state="active")


peers_st = st.lists(
    st.tuples(st.integers(0, 10**12), st.sampled_from(["a", "b", "c", "d"]),
              st.floats(0.0, 1.0)),
    min_size=0, max_size=40,
).map(lambda rows: [peer(i, free, subnet, avail) for i, (free, subnet, avail)
                    in enumerate(rows)])


@settings(max_examples=200, deadline=None)
@given(peers_st, st.integers(1, 64 * 2**20), st.integers(0, 2**32))
def test_place_gives_n_distinct_peers_with_room(peers: list[Peer], size: int,
                                                seed: int) -> None:
    try:
        chosen = placement.place(peers, size, random.Random(seed))
    except placement.NotEnoughPeers as exc:
        # peers with room for the biggest fragment (k=1) are never dropped
        roomy = [p for p in peers if p.free_bytes >= placement.fragment_size(size, 1)]
        assert exc.have < exc.need and len(roomy) < exc.need
        return
    ids = [p.id for p in chosen.peers]
    assert len(ids) == len(set(ids)) == chosen.code.n
    spares = [p.id for p in chosen.spares]
    assert len(spares) <= placement.spare_count(chosen.code.n)
    assert len(set(ids + spares)) == len(ids) + len(spares)
    assert set(ids + spares) <= {p.id for p in peers}
    assert all(p.free_bytes >= chosen.fragment_size for p in chosen.peers + chosen.spares)
    assert chosen.fragment_size == placement.fragment_size(size, chosen.code.k)
    assert chosen.code.k <= 2 * chosen.code.n / 3


@given(peers_st, st.integers(0, 2**32))
def test_order_is_a_permutation_stable_under_input_order(peers: list[Peer], seed: int) -> None:
    a = placement.order_candidates(peers, random.Random(seed))
    b = placement.order_candidates(list(reversed(peers)), random.Random(seed))
    assert a == b
    assert sorted(p.id for p in a) == sorted(p.id for p in peers)


@given(peers_st, st.integers(0, 2**32))
def test_first_peers_span_every_subnet(peers: list[Peer], seed: int) -> None:
    ordered = placement.order_candidates(peers, random.Random(seed))
    subnets = {p.subnet for p in peers}
    assert {p.subnet for p in ordered[:len(subnets)]} == subnets


def test_weighting_favours_free_space() -> None:
    peers = [peer(0, 10**6), peer(1, 10**9)]
    firsts = [placement.weighted_order(peers, random.Random(s))[0].id for s in range(2000)]
    big_first = firsts.count(peers[1].id)
    assert big_first > 1900  # weight ratio 1000:1


@pytest.mark.parametrize(("url", "subnet"), [
    ("http://203.0.113.7:8421", "203.0.113.0/24"),
    ("https://[2001:db8::1]:8421/", "2001:db8::/64"),
    ("http://Peer.Example.org:80", "peer.example.org"),
    ("http://127.0.0.1:1", "127.0.0.0/24"),
])
def test_subnet_of(url: str, subnet: str) -> None:
    assert placement.subnet_of(url) == subnet


def test_not_enough_peers_message() -> None:
    with pytest.raises(placement.NotEnoughPeers,
                       match=r"not enough online peers \(have 1, need 2\)"):
        placement.place([peer(0, 10**9)], 1000, random.Random(1))


def test_equal_balances_place_on_direct_peers_before_relayed_ones() -> None:
    relay = "http://203.0.113.7:8601/v1/relay"
    peers = [peer(i, 10**9, f"s{i}", 0.9) for i in range(40)]
    peers = [replace(p, url=f"{relay}/{p.id}~{'ab' * 32}") if i % 2 == 0 else p
             for i, p in enumerate(peers)]
    for seed in range(20):
        chosen = placement.place(peers, 10**6, random.Random(seed),
                                 balances=dict.fromkeys((p.id for p in peers), 0))
        flags = [placement.relayed(p) for p in chosen.peers]
        assert flags == sorted(flags) and flags.count(False) == 20  # every direct one first
    low = dict.fromkeys((p.id for p in peers), 0) | {peers[0].id: -5}
    chosen = placement.place(peers, 10**6, random.Random(1), balances=low)
    assert chosen.peers[0] == peers[0]  # relayed, but the lowest balance goes first
