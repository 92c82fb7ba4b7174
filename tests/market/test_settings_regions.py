"""The settings window's math (§3.1, eq. 4): the paper's example and the effective regions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.market.resources import prices
from p2pbak.market.settings import NAMES, Snapshot, balance, paper_example, prior_snapshot
from p2pbak.units import GB

caps_st = st.tuples(st.integers(GB // 10, 10**13), st.integers(1_000, 10**8),
                    st.integers(1_000, 10**8))


def test_paper_example_space_beyond_5kbs_upload_buys_nothing() -> None:
    # §3.1: "if a user limits his upload bandwidth to 5KB/s, increasing his space from 50GB
    # to 100GB should not increase his online backup space"
    at50, at100 = paper_example(prior_snapshot())
    assert at50.total_bytes == at100.total_bytes > 0
    assert at50.regions["space"] < 50 * GB  # the thick line ends before 50 GB
    inside = balance(prior_snapshot(), 20 * GB, 5_000, 0)
    assert inside.total_bytes < at50.total_bytes  # within the thick line space counts


def test_a_wider_slack_moves_the_region_out() -> None:
    loose = prior_snapshot(slack=4.0)
    assert balance(loose, 50 * GB, 5_000, 0).regions["space"] > 100 * GB
    with pytest.raises(ValueError):
        balance(prior_snapshot(slack=0.5), GB, 1, 1)


@settings(max_examples=150, deadline=None)
@given(caps_st, st.integers(0, 2), st.floats(1.1, 20.0), st.floats(0.05, 1.0),
       st.floats(0.05, 20), st.floats(0.05, 20))
def test_raising_one_slider_never_shrinks_the_other_regions(
        caps: tuple[int, int, int], i: int, k: float, avail: float, pu: float,
        pd: float) -> None:
    snap = Snapshot(**{**prior_snapshot(avail).__dict__, "p": prices(pu, pd)})
    before = balance(snap, *caps)
    raised = list(caps)
    raised[i] = int(raised[i] * k)
    after = balance(snap, *raised)
    for j, name in enumerate(NAMES):
        if j != i:
            assert after.regions[name] >= before.regions[name] - 1
    assert after.total_bytes >= before.total_bytes - 1  # and backup space never drops


@settings(max_examples=150, deadline=None)
@given(caps_st, st.integers(0, 2), st.floats(1.05, 5.0))
def test_moving_a_slider_counts_exactly_inside_its_region(
        caps: tuple[int, int, int], i: int, k: float) -> None:
    snap = prior_snapshot()
    name = NAMES[i]
    region = balance(snap, *caps).regions[name]

    def total_at(value: int) -> int:
        at = list(caps)
        at[i] = value
        return balance(snap, *at).total_bytes

    lo = region // 4
    if lo > 1000:
        assert total_at(int(lo * k)) > total_at(lo)
    beyond = int(region * 1.01) + 10
    assert total_at(int(beyond * k)) == pytest.approx(total_at(beyond), abs=2)


def test_snapshot_round_trips_through_a_quote() -> None:
    snap = prior_snapshot(0.7)
    quote = {"prices": {"p": snap.p.to_dict()}, "mix": snap.mix.to_dict(),
             "availability": 0.7, "in_use_bytes": 5 * GB,
             "market": {"demand": snap.demand.to_dict(), "slack": snap.slack,
                        "overheads": snap.overheads.to_dict(), "disk_bytes": 7 * GB}}
    back = Snapshot.from_quote(quote)
    assert back.in_use_bytes == 5 * GB and back.disk_bytes == 7 * GB
    b = balance(back, 0, 0, 0)  # no space cap: the disk counts
    assert b.available_bytes == max(0, b.total_bytes - 5 * GB)
    assert b.regions["space"] >= b.effective["space"]


def test_market_explain_prints_the_paper_example() -> None:
    from p2pbak.localgrid.grid import run_cli
    from tests.support.grid import summary

    r = run_cli(["market", "explain", "--json"], timeout=60)
    ex = summary(r)["ratio_example"]
    assert ex["upload_bytes_per_s"] == 5000
    assert ex["backup_bytes_at_50gb"] == ex["backup_bytes_at_100gb"] > 0
    assert ex["space_region_bytes"] < 50 * GB
    text = run_cli(["market", "explain"], timeout=60).stdout
    assert "§3.1 at 5 KB/s upload" in " ".join(text.split())
