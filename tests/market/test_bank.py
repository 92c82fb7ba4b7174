"""Bank rules (Table 1, §2.4) and work allocation."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.market.allocation import Candidate, order_by_balance, subnet_of
from p2pbak.market.bank import (
    BANK,
    GB,
    PriceTable,
    alert_threshold,
    backup_postings,
    days_until_frozen,
    is_frozen,
    is_low,
    max_deficit,
    retrieval_postings,
    storage_postings,
    to_micro,
    upkeep_postings,
)
from p2pbak.market.prices import Overheads
from p2pbak.market.resources import prices
from p2pbak.units import MICRO

TABLE = PriceTable.from_prices(prices(0.37, 0.21), Overheads(factor=185 / 64))
peers = st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 10 * GB)),
                 min_size=1, max_size=12)


def _check(rows: list, consumer: str | None = None) -> dict[str, int]:
    assert all(isinstance(r.amount, int) for r in rows)
    assert sum(r.amount for r in rows) == 0
    merged = {r.account: r.amount for r in rows}
    assert len(merged) == len(rows)  # one row per account
    if consumer is not None and consumer in merged:
        assert merged[consumer] <= 0
    return merged


def test_price_table_in_micro_credits() -> None:
    assert TABLE.space == MICRO
    assert TABLE.upload == 370_000 and TABLE.download == 210_000
    assert TABLE.backup == to_micro(185 / 64 * 0.21)
    assert PriceTable.from_dict(TABLE.to_dict()) == TABLE


@given(st.integers(0, 50 * GB), peers)
def test_backup_conserves_and_pays_download(data: int, frags: list) -> None:
    rows = _check(backup_postings("me", data, frags, TABLE), "me")
    assert rows.get("me", 0) == (-(TABLE.backup * data)) // GB  # ceil, as a debit
    for peer in {p for p, _ in frags}:
        size = sum(s for p, s in frags if p == peer)
        assert rows.get(peer, 0) == sum(TABLE.download * s // GB
                                        for p, s in frags if p == peer)
        assert rows.get(peer, 0) <= TABLE.download * size // GB


@given(st.integers(0, 50 * GB), peers)
def test_retrieval_conserves_and_pays_upload(data: int, ups: list) -> None:
    rows = _check(retrieval_postings("me", data, ups, TABLE), "me")
    assert rows.get("me", 0) == (-(TABLE.retrieval * data)) // GB


@given(st.integers(1, 10 * GB), st.integers(1, 86_400 * 30),
       st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 5 * GB),
                          st.floats(0.01, 1.0)), min_size=1, max_size=8))
def test_storage_conserves_and_pays_effective_space(data: int, secs: int,
                                                    holders: list) -> None:
    _check(storage_postings("me", data, secs, holders, TABLE), "me")


def test_storage_pays_for_effective_space() -> None:
    # 30 GB held for a day by a peer online half the time: paid for 10 effective GB-days
    rows = _check(storage_postings("me", 10 * GB, 86_400, [("h", 30 * GB, 0.5)], TABLE))
    assert rows["h"] == 10 * TABLE.space
    assert rows["me"] == -10 * TABLE.storage
    assert rows[BANK] == 10 * TABLE.storage - 10 * TABLE.space


def test_fair_backup_leaves_bank_only_rounding() -> None:
    # fragments summing to exactly factor × data: the bank keeps less than one µc per peer
    frags = [(f"p{i}", GB // 64) for i in range(185)]
    rows = _check(backup_postings("me", GB, frags, TABLE))
    assert 0 <= rows.get(BANK, 0) <= 185 + 1


@given(st.lists(st.tuples(st.sampled_from("pqr"), st.integers(0, GB), st.integers(0, GB)),
                min_size=1, max_size=6), st.sampled_from([BANK, "owner"]))
def test_upkeep_paid_for_both_bandwidths(transfers: list, payer: str) -> None:
    rows = _check(upkeep_postings(transfers, TABLE, payer))
    expected = sum((TABLE.upload * u + TABLE.download * d) // GB for _, u, d in transfers)
    assert rows.get(payer, 0) == -expected


def test_deficit_freeze_and_alert_rules() -> None:
    limit = max_deficit(2 * MICRO)  # two credits a day for 14 days
    assert limit == 28 * MICRO
    assert max_deficit(0) == 10 * MICRO  # a new user can still start
    assert not is_frozen(-limit + 1, limit) and is_frozen(-limit, limit)
    assert alert_threshold(limit) == -21 * MICRO
    assert is_low(-21 * MICRO, limit) and not is_low(-21 * MICRO + 1, limit)
    assert days_until_frozen(0, limit, -2 * MICRO) == pytest.approx(14.0)
    assert days_until_frozen(0, limit, 0) is None
    assert days_until_frozen(-limit, limit, 5) == 0.0
    with pytest.raises(ValueError):
        max_deficit(-1)


def test_order_lowest_balance_first() -> None:
    cands = [Candidate("a", 50, "n1"), Candidate("b", -30, "n2"), Candidate("c", 0, "n3"),
             Candidate("d", -100, "n4")]
    assert order_by_balance(cands, seed=1) == ["d", "b", "c", "a"]


def test_order_prefers_distinct_subnets() -> None:
    cands = [Candidate("a", -10, "n1"), Candidate("b", -9, "n1"), Candidate("c", 5, "n2")]
    assert order_by_balance(cands, seed=0) == ["a", "c", "b"]


@given(st.lists(st.tuples(st.integers(-5, 5), st.sampled_from("uvw")), min_size=1,
                max_size=20), st.integers(0, 2**32))
def test_order_is_a_seeded_permutation(rows: list, seed: int) -> None:
    cands = [Candidate(f"p{i}", b, s) for i, (b, s) in enumerate(rows)]
    order = order_by_balance(cands, seed)
    assert sorted(order) == sorted(c.peer_id for c in cands)
    assert order == order_by_balance(cands, seed)
    by_id = {c.peer_id: c for c in cands}
    first = order[:len({c.subnet for c in cands})]
    assert len({by_id[p].subnet for p in first}) == len(first)  # distinct subnets first
    balances = [by_id[p].balance for p in first]
    assert balances == sorted(balances)  # and lowest balance first among them


def test_subnet_of() -> None:
    assert subnet_of("192.168.7.20") == "192.168.7.0/24"
    assert subnet_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert subnet_of("peer.example") == "peer.example"


@given(st.integers(0, 2**32))
def test_order_prefers_direct_peers_only_at_equal_balance(seed: int) -> None:
    cands = [Candidate("r1", 0, "n1", relayed=True), Candidate("d1", 0, "n2"),
             Candidate("r0", -1, "n3", relayed=True), Candidate("d2", 0, "n4"),
             Candidate("r2", 0, "n5", relayed=True)]
    order = order_by_balance(cands, seed)
    assert order[0] == "r0"  # a lower balance still comes first, relayed or not
    assert set(order[1:3]) == {"d1", "d2"} and set(order[3:]) == {"r1", "r2"}
