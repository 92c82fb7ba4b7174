"""The keep policy of `forget`: restic's rules, as properties and worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.datapath.retention import Policy, apply_policy, group_by

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
times = st.lists(st.integers(min_value=0, max_value=3 * 365 * 24 * 60).map(
    lambda m: EPOCH + timedelta(minutes=m)), unique=True, max_size=60)
counts = st.integers(min_value=0, max_value=8)
policies = st.builds(Policy, last=counts, hourly=counts, daily=counts, weekly=counts,
                     monthly=counts, yearly=counts)


def decide(ts: list[datetime], policy: Policy) -> tuple[set[datetime], set[datetime]]:
    d = apply_policy(ts, policy, lambda t: t, tz=UTC)
    return set(d.keep), set(d.remove)


@given(times, st.integers(min_value=0, max_value=70))
def test_keep_last_n_keeps_exactly_the_n_newest(ts: list[datetime], n: int) -> None:
    keep, remove = decide(ts, Policy(last=n))
    assert keep == set(sorted(ts, reverse=True)[:n])
    assert remove == set(ts) - keep


@given(times, policies)
def test_kept_and_removed_partition_the_snapshots(ts: list[datetime], p: Policy) -> None:
    keep, remove = decide(ts, p)
    assert keep | remove == set(ts) and not keep & remove


@given(times, policies, policies)
def test_policies_union(ts: list[datetime], a: Policy, b: Policy) -> None:
    """Keeping by each rule alone, then uniting, is what the combined policy keeps."""
    combined = Policy(**{name: max(x, y) for (name, x), y in
                         zip(a.counts().items(), b.counts().values(), strict=True)})
    alone = set()
    for name, value in combined.counts().items():
        alone |= decide(ts, Policy(**{name: value}))[0]
    assert decide(ts, combined)[0] == alone


@given(times.filter(bool), policies.filter(lambda p: not p.empty()))
def test_never_deletes_everything_when_any_keep_is_positive(ts: list[datetime],
                                                            p: Policy) -> None:
    keep, _ = decide(ts, p)
    assert max(ts) in keep  # the newest snapshot is kept by every rule


@given(times, st.integers(min_value=1, max_value=10))
def test_daily_keeps_the_newest_of_each_of_the_n_latest_days(ts: list[datetime],
                                                             n: int) -> None:
    keep, _ = decide(ts, Policy(daily=n))
    days = sorted({t.date() for t in ts}, reverse=True)[:n]
    assert keep == {max(t for t in ts if t.date() == day) for day in days}


def test_unlimited_keeps_one_per_period() -> None:
    ts = [EPOCH + timedelta(hours=h) for h in range(0, 24 * 10, 6)]  # 4 a day, 10 days
    keep, _ = decide(ts, Policy(daily=-1))
    assert len(keep) == 10
    keep, _ = decide(ts, Policy(last=-1))
    assert keep == set(ts)


def test_weekly_uses_iso_weeks() -> None:
    sunday = datetime(2024, 1, 7, 12, tzinfo=UTC)  # ISO week 1 ends on Sunday
    monday = sunday + timedelta(days=1)  # week 2
    saturday = sunday - timedelta(days=1)  # week 1, older than sunday
    keep, remove = decide([saturday, sunday, monday], Policy(weekly=2))
    assert keep == {sunday, monday} and remove == {saturday}


def test_restic_example_mixed_rules() -> None:
    """Two snapshots a day for 40 days: keep-last 3, daily 7, weekly 4, monthly 2."""
    ts = [EPOCH + timedelta(days=d, hours=h) for d in range(40) for h in (9, 21)]
    d = apply_policy(ts, Policy(last=3, daily=7, weekly=4, monthly=2), lambda t: t, tz=UTC)
    newest = sorted(ts, reverse=True)
    assert newest[:3] == d.keep[:3]
    assert d.reasons[id(newest[0])] == ["last snapshot", "daily snapshot", "weekly snapshot",
                                        "monthly snapshot"]
    # days 39..33 at 21:00, the last of weeks before, and January's last day
    daily = {EPOCH + timedelta(days=day, hours=21) for day in range(33, 40)}
    assert daily <= set(d.keep)
    assert EPOCH + timedelta(days=30, hours=21) in d.keep  # 2024-01-31: January's newest
    assert len(d.keep) + len(d.remove) == len(ts)


def test_negative_counts_below_minus_one_are_refused() -> None:
    with pytest.raises(ValueError, match="keep-daily"):
        Policy(daily=-2)


def test_group_by_keeps_first_appearance_order() -> None:
    assert list(group_by(["b1", "a1", "b2"], lambda s: s[0])) == ["b", "a"]
