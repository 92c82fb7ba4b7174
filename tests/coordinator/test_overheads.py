"""Service prices q from the overheads actually measured (§2.2, §3.3): the erasure factor and
holders' availability of what is stored, the backup factor of new packs, and the upkeep the
bank paid. With them the bank pays out what it charges when the work matches; with the
fixed prior it does not."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p2pbak.coordinator import billing, tariff
from p2pbak.coordinator import prices as job
from p2pbak.market import bank as rules
from p2pbak.market.bank import BANK, GB, PriceTable, to_micro
from p2pbak.market.prices import Flows, Overheads, measured_overheads, repair_reserve
from p2pbak.market.resources import Resources, prices
from p2pbak.store.db import bank, garbage
from p2pbak.store.db import tasks as repair_store
from p2pbak.store.db.bank import user_account
from p2pbak.units import DAY
from tests.coordinator.test_bank import USERS, machine_id, open_coord, store_pack, ticket

SECONDS = 86_400
price = st.floats(0.05, 20.0)
holders = st.lists(st.tuples(st.integers(1, 50 * GB), st.floats(0.05, 1.0)),
                   min_size=1, max_size=8)


def net_of(postings: list[rules.Posting]) -> tuple[int, int]:
    """(µc charged to consumers, µc paid to suppliers) of one operation's postings."""
    charged = -sum(p.amount for p in postings if p.account != BANK and p.amount < 0)
    paid = sum(p.amount for p in postings if p.account != BANK and p.amount > 0)
    return charged, paid


def a_day(table: PriceTable, data: int, held: list[tuple[int, float]], backup: int,
          backup_factor: float, restored: int, upkeep: int) -> tuple[int, int, int]:
    """One day's (charged, paid, postings) for this work, through market.bank's rules."""
    ops = [
        rules.storage_postings("user:a", data, SECONDS,
                               [(f"user:h{i}", b, a) for i, (b, a) in enumerate(held)], table),
        rules.backup_postings("user:a", backup, [("user:h0", round(backup * backup_factor))],
                              table),
        rules.retrieval_postings("user:a", restored, [("user:h1", restored)], table),
    ]
    charged = paid = 0
    for postings in ops:
        c, p = net_of(postings)
        charged, paid = charged + c, paid + p
    return charged, paid + upkeep, sum(len(o) for o in ops)


@given(price, price, holders, st.integers(1, 20 * GB), st.integers(0, 10 * GB),
       st.floats(1.0, 4.0), st.integers(0, 5 * GB), st.integers(0, 10**9),
       st.integers(1, 14))
def test_measured_q_charges_what_the_bank_pays_when_the_work_matches(
        pu: float, pd: float, held: list[tuple[int, float]], data: int, backup: int,
        backup_factor: float, restored: int, upkeep_per_day: int, window_days: int) -> None:
    p = prices(pu, pd)
    data = min(data, sum(b for b, _ in held))  # a code stores at least the data: factor ≥ 1
    flows = Flows(backed_up=backup, backup_stored=round(backup * backup_factor),
                  upkeep_paid=upkeep_per_day * window_days, stored_byte_seconds=data * SECONDS,
                  seconds=window_days * SECONDS)
    o = measured_overheads(data, held, flows, rules.MICRO * (pu + pd))
    charged, paid, n = a_day(PriceTable.from_prices(p, o), data, held, backup, backup_factor,
                             restored, upkeep_per_day)
    # rounding: 1 µc per posting, 0.5 µc per GB of each service price rounded to the µc,
    # float error of the factor·availability product (relative 1e-9)
    units = (data + backup + restored) / GB
    assert abs(charged - paid) <= n + 1 + units + 1e-9 * paid


@example(1.0, 1.0, [(1, 0.0), (1, 5e-324)], 1, 0, 0, 0, 0, 0)  # Σ bytes·a underflows to 0
@given(price, price, st.lists(st.tuples(st.integers(0, 10**12), st.floats(0.0, 1.0)),
                              max_size=6),
       st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12),
       st.integers(0, 10**12), st.integers(0, 10**15), st.integers(0, 10**7))
def test_measured_overheads_are_always_valid(
        pu: float, pd: float, held: list[tuple[int, float]], data: int, backed: int,
        stored: int, paid: int, byte_seconds: int, seconds: int) -> None:
    flows = Flows(backed, stored, paid, byte_seconds, seconds)
    o = measured_overheads(data, held, flows, rules.MICRO * (pu + pd))
    assert o.factor >= 1 and 0 < o.holder_availability <= 1 and o.repair >= 0
    assert o.fetch == 1 and o.download_per_gb >= 1
    assert Overheads.from_dict(o.to_dict()) == o  # a price row keeps them whole


def test_what_cannot_be_measured_is_the_prior() -> None:
    prior = Overheads(factor=3.5, holder_availability=0.4, repair=0.02)
    assert measured_overheads(0, [], prior=prior) == Overheads(
        factor=3.5, holder_availability=0.4, repair=0.02)
    # data held, but no storage billed yet: factor and availability measured, repair not
    o = measured_overheads(10 * GB, [(15 * GB, 0.9), (10 * GB, 0.6)],
                           Flows(upkeep_paid=10**6, seconds=DAY), 2e6, prior)
    assert o.factor == 2.5 and o.holder_availability == pytest.approx(0.78)
    assert o.repair == 0.02 and o.backup_factor is None and o.download_per_gb == 2.5
    # fragments lost below the data size: the factor stays a code's, at least 1
    assert measured_overheads(10 * GB, [(4 * GB, 0.5)]).factor == 1.0
    with pytest.raises(ValueError):
        measured_overheads(GB, [(GB, 1.5)])
    with pytest.raises(ValueError):
        Flows(upkeep_paid=-1)


@given(st.floats(0, 0.1), st.floats(0, 0.1), st.floats(1, 4))
def test_demand_keeps_the_prior_repair_reserve(measured: float, prior: float,
                                               factor: float) -> None:
    """Demand is read with the expected repair load (bandwidth for the day peers fail, and
    no chasing of bursts of moves); everything else stays what was measured."""
    o = Overheads(factor=factor, repair=measured)
    held = repair_reserve(o, Overheads(repair=prior))
    assert held.repair == prior
    assert replace(held, repair=measured) == o


def test_upkeep_is_charged_at_the_prices_to_come() -> None:
    """The repair load is the µc paid as GB at the new prices: when bandwidth got dearer
    since, q_S still funds exactly what was paid."""
    flows = Flows(upkeep_paid=7 * 10**6, stored_byte_seconds=100 * GB * DAY, seconds=7 * DAY)
    for pu, pd in ((1.0, 1.0), (4.0, 2.5)):
        o = measured_overheads(100 * GB, [(300 * GB, 0.5)], flows, rules.MICRO * (pu + pd))
        repair_share = o.repair * (pu + pd) * 100  # credits per day over 100 GB stored
        assert repair_share == pytest.approx(1.0)  # 7 credits over 7 days


# -- on a running coordinator ---------------------------------------------------------------

T0 = 1_900_000_000
AVAILABILITY = (0.95, 0.9, 0.85, 0.9)
PACK = 2 * 10**9  # each user's stored data: two fragments of the whole pack (factor 2)
DAILY = 10**8  # backed up (and yesterday's dropped) each day, same code
UPKEEP = 2 * 10**9  # bytes of each bandwidth repair and testing cost each day
DAYS = 4  # the job reads the upkeep over the interval it prices: one day


class Clock:
    def __init__(self) -> None:
        self.t = float(T0)

    def __call__(self) -> float:
        return self.t


async def backup(coord: object, owner: int, pack_id: str, holders: list[int],
                 size: int) -> None:
    """A pack of `owner` committed and charged, its store receipts handed in."""
    frags = await store_pack(coord, owner, pack_id, holders, size)  # type: ignore[arg-type]
    assert await billing.charge_backup(coord, USERS[owner], pack_id, size)  # type: ignore[arg-type]
    for h, fid in zip(holders, frags, strict=True):
        await billing.settle_receipt(coord, machine_id(h),  # type: ignore[arg-type]
                                     ticket(coord, "store", owner, h, size, fid))  # type: ignore[arg-type]


async def charged_between(coord: object, since: int, until: int) -> int:
    """µc consumers were charged by the operations booked within [since, until)."""
    return -int(await coord.db.scalar(  # type: ignore[attr-defined]
        "SELECT coalesce(sum(e.amount), 0) FROM entries e JOIN transactions t ON t.id = e.txn"
        " WHERE e.account = ? || t.user_name AND e.amount < 0 AND t.at >= ? AND t.at < ?",
        ("user:", since, until)))


async def bank_days(tmp: Path, clock: Clock) -> tuple[list[int], list[int], tuple[int, int],
                                                     tuple[int, int]]:
    """DAYS days of the same work; per day the bank's change and what consumers paid, and
    what the bank would keep of the last day's storage bill's space part at the prior's
    overheads and at the measured ones (with the holders' pay)."""
    coord = await open_coord(tmp, price_interval=DAY)
    try:
        await repair_store.set_availability(
            coord.db, {machine_id(i): a for i, a in enumerate(AVAILABILITY)}, 2**62)
        for owner in range(len(USERS)):  # each pack on the next two peers
            await backup(coord, owner, f"{owner:02x}" * 32, [(owner + 1) % 4, (owner + 2) % 4],
                         PACK)
        await billing.billing_job(coord)
        assert (await job.price_job(coord)) is not None
        changes, charges = [], []
        for day in range(DAYS):
            before = await bank.balance(coord.db, BANK)
            clock.t = T0 + day * DAY + 60
            pack = f"{day + 1:02x}".ljust(64, "d")
            await backup(coord, 0, pack, [2, 3], DAILY)
            if day:
                await garbage.drop_packs(coord.db, USERS[0], [f"{day:02x}".ljust(64, "d")])
            assert await billing.pay_upkeep(coord, [(machine_id(1), UPKEEP, 0),
                                                    (machine_id(3), 0, UPKEEP)], f"t:{day}")
            clock.t = T0 + (day + 1) * DAY - 1
            await billing.billing_job(coord)
            changes.append(await bank.balance(coord.db, BANK) - before)
            charges.append(await charged_between(coord, T0 + day * DAY, int(clock.t) + 1))
            clock.t = T0 + (day + 1) * DAY
            row = await job.price_job(coord)
            assert row is not None and row.overheads is not None
        o = await tariff.current_overheads(coord)
        assert o == Overheads.from_dict(row.overheads)
        return changes, charges, await storage_net(coord, tariff.OVERHEADS), \
            await storage_net(coord, o)
    finally:
        await coord.stop()


async def storage_net(coord: object, o: Overheads) -> tuple[int, int]:
    """(what the bank keeps, what holders are paid) of a day's storage at today's p and the
    space part of q_S at overheads `o` (no repair share)."""
    p, _ = await tariff.current_prices(coord)  # type: ignore[arg-type]
    table = PriceTable.from_prices(p, replace(o, repair=0.0))
    data, held = await bank.holdings(coord.db)  # type: ignore[attr-defined]
    net = paid = 0
    for user, size in data.items():
        postings = rules.storage_postings(user_account(user), size, DAY, [
            (h.peer_id, h.bytes, h.availability) for h in held if h.user == user], table)
        net += sum(p.amount for p in postings if p.account == BANK)
        paid += sum(p.amount for p in postings if p.amount > 0 and p.account != BANK)
    return net, paid


def test_bank_nets_zero_on_a_running_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    with tempfile.TemporaryDirectory() as tmp:
        changes, charges, at_prior, measured = asyncio.run(bank_days(Path(tmp), clock))
    # from the first measured day on, a day's charges pay a day's work
    for change, charged in list(zip(changes, charges, strict=True))[1:]:
        assert charged > 10**6 and abs(change) <= 1e-4 * charged, (changes, charges)
    # before, q_S funded the prior's repair load, not the upkeep paid: the bank drifted
    assert abs(changes[0]) > 0.05 * charges[0]
    # the space part of q_S pays the holders exactly; at the fixed prior (factor 3,
    # availability 0.5 where the code is 2 and holders are online 90%) it does not
    (prior_net, paid), (net, _) = at_prior, measured
    assert paid > 10**6 and abs(net) <= 1e-5 * paid and abs(prior_net) > 0.1 * paid


def test_price_rows_and_the_supply_quote_carry_the_measured_overheads() -> None:
    async def scenario(tmp: Path) -> None:
        coord = await open_coord(tmp, price_interval=0)
        try:
            assert await tariff.current_overheads(coord) == tariff.OVERHEADS
            await store_pack(coord, 0, "ab" * 32, [1, 2, 3, 0], size=10**9)
            row = await job.price_job(coord)
            assert row is not None and row.overheads is not None
            assert row.overheads["factor"] == 4.0 and row.to_dict()["overheads"] == row.overheads
            o = await tariff.current_overheads(coord)
            assert o.factor == 4.0
            # the row's q is Aᵀp at those overheads, not at the prior's
            table = PriceTable.from_prices(prices(row.p_upload, row.p_download), o)
            assert row.prices == table.to_dict()
            assert row.prices["backup"] == to_micro(4.0 * row.p_download)
            quote = await job.supply_quote(coord, "bob", machine_id(1), 10**10, 10**5, 10**5)
            assert quote["prices"]["micro"] == row.prices
            demand = job.default_demand(o)
            assert demand.download / demand.space != pytest.approx(
                job.default_demand().download / job.default_demand().space)
            assert isinstance(demand, Resources)
        finally:
            await coord.stop()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


def test_the_price_history_shows_the_factor() -> None:
    from p2pbak.commands.market_prices import _line

    row = {"at": T0, "p_upload": 0.5, "p_download": 2.0, "g": [0.1, -0.2], "note": "",
           "overheads": Overheads(factor=11 / 3, holder_availability=0.7).to_dict()}
    assert "factor 3.67" in _line(row)
    assert "factor" not in _line({**row, "overheads": None})  # rows written before
