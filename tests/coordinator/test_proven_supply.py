"""Supply counts what is proven, on a real coordinator database: a peer's counted space is
what a passed audit vouches for plus headroom, never its declared caps; caps count at their
lowest between two price jobs; placement gives a peer no more room than that; the price job's
S does not move when one peer declares a petabyte."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from p2pbak.coordinator import prices as job
from p2pbak.coordinator import proven
from p2pbak.market.bank import BANK, Posting
from p2pbak.market.caps import supply_from_caps
from p2pbak.market.proven import SPACE_FLOOR, Caps
from p2pbak.market.resources import Resources
from p2pbak.market.supply import RatioLimits, effective_supply
from p2pbak.store.db import bank, moving, supply
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import tasks as store
from p2pbak.store.db.bank import user_account
from p2pbak.units import GB
from tests.coordinator.test_bank import USERS, machine_id, opened_coord, run, store_pack

PETABYTE = 10**15
pytestmark = pytest.mark.usefixtures("db_backend")  # SQLite and PostgreSQL


async def _heartbeat_all(coord: object) -> None:
    for i in range(len(USERS)):
        await coordinator_peers.heartbeat(coord.db, peer_id=machine_id(i),  # type: ignore[attr-defined]
                                          url=f"http://127.0.0.1:{9000 + i}",
                                          subnet="127.0.0.0/24", stored_bytes=0,
                                          free_bytes=10**13)


async def _space(coord: object, i: int) -> int:
    peers = await coordinator_peers.online(coord.db, 60)  # type: ignore[attr-defined]
    return (await proven.counted(coord, peers))[machine_id(i)].space  # type: ignore[arg-type]


def test_space_counted_is_what_a_passed_audit_vouches_for_plus_headroom() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, price_interval=0) as coord:
            await bank.set_peer_caps(coord.db, machine_id(1), PETABYTE, None, None)
            await _heartbeat_all(coord)
            assert await _space(coord, 1) == SPACE_FLOOR  # declared 1 PB, proved nothing
            fids = await store_pack(coord, 0, "aa" * 32, [1], size=3 * GB)
            assert await _space(coord, 1) == SPACE_FLOOR  # held, not yet proven
            await store.record_audit(coord.db, machine_id(1), machine_id(2), fids[0], "ok")
            assert await _space(coord, 1) == 6 * GB  # proven 3 GB, headroom as much again
            await store.record_audit(coord.db, machine_id(1), machine_id(2), fids[0], "offline")
            assert await _space(coord, 1) == 6 * GB  # an audit that never reached it
            await store.record_audit(coord.db, machine_id(1), machine_id(2), fids[0], "failed")
            assert await _space(coord, 1) == SPACE_FLOOR  # its last audit failed
            roomy = await proven.with_counted_room(
                coord, await coordinator_peers.online(coord.db, 60))
            assert {p.free_bytes for p in roomy} == {SPACE_FLOOR}  # not the 10 TB free

    run(scenario)


def test_caps_moved_twice_count_at_their_lowest() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, price_interval=0) as coord:
            peer = machine_id(2)
            await bank.set_peer_caps(coord.db, peer, 5 * GB, 2000, None)
            await bank.set_peer_caps(coord.db, peer, PETABYTE, 1000, None)
            await bank.set_peer_caps(coord.db, peer, PETABYTE, None, 10**6)
            low = await supply.lowest_caps(coord.db, 0)
            assert low[peer] == Caps(5 * GB, 1000, 10**6)  # None (no cap) is the highest
            later = await supply.lowest_caps(coord.db, 2**40)  # none set since: the current
            assert later[peer] == Caps(PETABYTE, None, 10**6)
            await bank.set_peer_caps(coord.db, peer, 0, None, 10**6)  # lends no space now
            await bank.set_peer_caps(coord.db, peer, PETABYTE, None, 10**6)
            assert (await supply.lowest_caps(coord.db, 0))[peer].space == 0  # the lowest

    run(scenario)


def test_a_petabyte_declared_does_not_move_the_measured_supply() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, price_interval=0) as coord:
            await _heartbeat_all(coord)
            await store_pack(coord, 0, "bb" * 32, [1, 2, 3], size=10**9)
            await job.price_job(coord)
            before = await job.price_job(coord)
            await bank.set_peer_caps(coord.db, machine_id(3), PETABYTE, 10**9, 10**9)
            after = await job.price_job(coord)
            assert before is not None and after is not None
            s0 = Resources.from_dict(before.supply)  # type: ignore[arg-type]
            s1 = Resources.from_dict(after.supply)  # type: ignore[arg-type]
            assert s1.space == s0.space  # the liar was counted at its floor before and after
            assert s1.space < 4 * SPACE_FLOOR / GB  # four peers at most their floor each

    run(scenario)


def test_the_supply_summed_in_sql_is_the_market_rule_per_peer() -> None:
    """The price job sums S in one statement (store.db.supply.online_supply); peer by
    peer through market.proven, caps and eq. (4) in Python, the total is the same, with
    caps of every kind (none, zero space, moved twice), a stored pack and limits or none."""
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, price_interval=0) as coord:
            await _heartbeat_all(coord)
            await bank.set_peer_caps(coord.db, machine_id(0), 0, 500, None)  # lends no space
            await bank.set_peer_caps(coord.db, machine_id(1), 5 * GB, 2000, 70_000)
            await bank.set_peer_caps(coord.db, machine_id(1), PETABYTE, 1000, None)
            # lent nothing, then some, within the window: counts at its lowest, nothing
            await bank.set_peer_caps(coord.db, machine_id(2), 0, None, 10**7)
            await bank.set_peer_caps(coord.db, machine_id(2), 3 * SPACE_FLOOR, None, 10**7)
            await store_pack(coord, 3, "ab" * 32, [1, 2], size=4 * GB)  # download proven
            peers = await coordinator_peers.online(coord.db, 60)
            demand = Resources(1.0, 0.3, 0.2)
            for limits in (None, RatioLimits.from_demand(demand)):
                for _ in range(5):  # both reads in one second: the cap window is 0 s wide
                    second = int(time.time())
                    counted = await proven.counted(coord, peers)
                    want = [0.0, 0.0, 0.0]
                    for p in peers:
                        c = counted[p.id]
                        s = supply_from_caps(c.space, c.upload, c.download, p.availability)
                        s = s if limits is None else effective_supply(s, limits)
                        want = [w + x for w, x in zip(want, s.as_tuple(), strict=True)]
                    got = await job.maximum_supply(coord, limits, 60)
                    if int(time.time()) == second:
                        break
                assert got is not None and got.as_tuple() == pytest.approx(want, rel=1e-9)
                assert min(want) > 0  # every resource supplied: a sum that means something

    run(scenario)


def test_the_room_move_planning_reads_in_sql_is_the_counted_room() -> None:
    """Move planning reads its donors and receivers in SQL (store.db.moving.movers): a
    donor is an account that must shed more than half its smallest fragment's income;
    a receiver's room is the room coordinator.proven.with_counted_room gives it, with
    caps of every kind and a passed audit, and receivers are the lowest balances."""
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, price_interval=0) as coord:
            await _heartbeat_all(coord)
            await coordinator_peers.heartbeat(coord.db, peer_id=machine_id(3),
                                              url="http://127.0.0.1:9003",
                                              subnet="127.0.0.0/24", stored_bytes=GB // 4,
                                              free_bytes=10**13)
            await bank.set_peer_caps(coord.db, machine_id(0), 0, 500, None)  # lends nothing
            await bank.set_peer_caps(coord.db, machine_id(2), 3 * GB, None, None)
            fids = await store_pack(coord, 0, "ac" * 32, [1], size=3 * GB)
            await store.record_audit(coord.db, machine_id(1), machine_id(2), fids[0], "ok")
            rich = 10**9  # µc paid to the holder's owner: it earns too much
            await bank.book(coord.db, kind="test", postings=[
                Posting(user_account(USERS[1]), rich), Posting(BANK, -rich)])
            roomy = await proven.with_counted_room(
                coord, await coordinator_peers.online(coord.db, 60))
            want = {p.id: p.free_bytes for p in roomy}
            assert len(set(want.values())) >= 3  # rooms the rule tells apart
            t = int(time.time())
            at = moving.Window(t - 3600, coordinator_peers.ACTIVE, t - 60,
                               t - proven.cap_window(coord), SPACE_FLOOR)
            terms = moving.Want(7.0, 24.0)
            donors, got = await moving.movers(coord.db, at, terms, 1e-9, 0.01, 100)
            assert [d.peer_id for d in donors] == [machine_id(1)]
            assert donors[0].balance == rich and donors[0].flow == rich
            smallest = await coord.db.scalar("SELECT min(size) FROM fragments")
            assert {r.peer_id: r.room for r in got} == \
                {p: room for p, room in want.items() if room >= smallest}
            _, two = await moving.movers(coord.db, at, terms, 1e-9, 0.01, 2)
            assert sorted(r.balance for r in two) == sorted(r.balance for r in got)[:2]
            # a fragment's income beyond what the account must shed: no donor, no one read
            assert await moving.movers(coord.db, at, terms, 1000.0, 0.01, 100) == ([], [])

    run(scenario)
