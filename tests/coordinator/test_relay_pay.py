"""Relays are paid for what they carried, only with the proof that pays the transfer, once
(issue 13), on a real coordinator database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest

from p2pbak.coordinator import billing, evidence, reach, repair, tariff
from p2pbak.coordinator.reach import Reach
from p2pbak.coordinator.service import Coordinator
from p2pbak.market import bank as rules
from p2pbak.net import tickets
from p2pbak.net.relay import COORDINATOR_ID
from p2pbak.store.db import bank, claims
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db.bank import user_account
from tests.coordinator.test_bank import (
    MB,
    USERS,
    acked_ticket,
    check_ledger,
    machine_id,
    opened_coord,
    placed_ticket,
    run,
    store_pack,
    ticket,
    via,
)

pytestmark = pytest.mark.usefixtures("db_backend")

RELAY = 3  # dave's peer relays for bob's (machine 1)


async def balances(coord: Coordinator) -> dict[str, int]:
    return await bank.balances(coord.db, [user_account(u) for u in USERS])


async def relay_rows(coord: Coordinator) -> list[tuple[str, int]]:
    return [(r[0], int(r[1])) for r in await coord.db.all(
        "SELECT ref, quantity FROM transactions WHERE kind = 'relay' ORDER BY id")]


async def relayed_by(coord: Coordinator, peer: int, relay: str) -> None:
    """`relay` carries machine `peer`, as POST /v1/reach records it (in the database)."""
    await reach.record(coord, machine_id(peer), Reach(relay_id=relay))


def carried(table: rules.PriceTable, size: int) -> int:
    """What a relay earns for `size` bytes: one download and one upload of each byte."""
    return (table.upload + table.download) * size // rules.GB


def test_ticket_to_a_relayed_peer_names_its_relay() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            direct = ticket(coord, "store", 0, 1, MB)
            await relayed_by(coord, 1, machine_id(RELAY))
            relayed = ticket(coord, "store", 0, 1, MB, via=await via(coord, 1))
            # moves no bytes: pays no relay
            asked = ticket(coord, "exists", 0, 1, MB, via=await via(coord, 1))
            key = coord.signing_key.public_key()
            check = {"fragment": "ab" * 32, "to": machine_id(1)}
            assert tickets.verify(key, direct, op="store", **check).via == ""
            assert "via" not in tickets.unverified(direct)  # as before relays were paid
            assert tickets.verify(key, relayed, op="store", **check).via == machine_id(RELAY)
            assert tickets.verify(key, asked, op="exists", **check).via == ""

    run(scenario)


def test_store_through_a_relay_pays_supplier_and_relay_from_the_bank() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            await relayed_by(coord, 1, machine_id(RELAY))
            size = 37 * MB + 11
            wire = await placed_ticket(coord, 0, 1, size)
            before = await balances(coord)
            booked, paid = await billing.settle_receipt(coord, machine_id(1), wire)
            _, table = await tariff.current_prices(coord)
            after = await balances(coord)
            assert booked and paid == table.download * size // rules.GB > 0
            assert after[user_account("bob")] - before[user_account("bob")] == paid
            assert after[user_account("dave")] - before[user_account("dave")] == \
                carried(table, size) > paid
            assert after[user_account("alice")] == before[user_account("alice")]
            [(ref, quantity)] = await relay_rows(coord)
            assert ref.startswith("relay:placed:") and quantity == size
            assert await claims.unbacked_payments(coord.db) == []
            await check_ledger(coord)

    run(scenario)


def test_relay_pay_counts_as_upkeep_in_the_measured_overheads() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            since = int(time.time()) - 5
            wire = await placed_ticket(coord, 0, 1, 20 * MB)
            await billing.settle_receipt(coord, machine_id(1), wire)
            direct = await bank.overhead_flows(coord.db, since, int(time.time()) + 5)
            await relayed_by(coord, 2, machine_id(RELAY))
            wire = await placed_ticket(coord, 0, 2, 20 * MB)
            await billing.settle_receipt(coord, machine_id(2), wire)
            flows = await bank.overhead_flows(coord.db, since, int(time.time()) + 5)
            _, table = await tariff.current_prices(coord)
            assert flows.upkeep_paid - direct.upkeep_paid == carried(table, 20 * MB)

    run(scenario)


def test_nothing_is_paid_to_a_relay_without_the_proof() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            fids = await store_pack(coord, 0, "ee" * 32, [1])
            await relayed_by(coord, 1, machine_id(RELAY))
            # a store nobody committed, a fetch nobody acknowledged: claims, no pay
            store = ticket(coord, "store", 0, 1, MB, "cd" * 32, await via(coord, 1))
            fetch = ticket(coord, "fetch", 0, 1, MB, fids[0], await via(coord, 1))
            for wire in (store, fetch):
                assert await billing.settle_receipt(coord, machine_id(1), wire) == (False, 0)
            assert (await balances(coord))[user_account("dave")] == 0
            assert await relay_rows(coord) == []
            # the receiver acknowledges: the waiting claim pays supplier and relay at once
            await evidence.acknowledge(coord, machine_id(0), fetch)
            assert await billing.settle_pending(coord, fids) > 0
            _, table = await tariff.current_prices(coord)
            assert (await balances(coord))[user_account("dave")] == carried(table, MB)
            fetch_id = tickets.unverified(fetch)["id"]
            assert [r for r, _ in await relay_rows(coord)] == [
                billing.relay_ref(f"ticket:{fetch_id}")]
            await check_ledger(coord)

    run(scenario)


def test_replayed_proofs_pay_the_relay_once() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            fids = await store_pack(coord, 0, "ef" * 32, [1])
            await relayed_by(coord, 1, machine_id(RELAY))
            fetch = await acked_ticket(coord, 0, 1, MB, fids[0])
            store = await placed_ticket(coord, 0, 1, 2 * MB)
            for _ in range(3):  # the receipts handed in again after lost answers
                await billing.settle_receipts(coord, machine_id(1), [fetch, store, fetch])
            _, table = await tariff.current_prices(coord)
            assert (await balances(coord))[user_account("dave")] == \
                carried(table, MB) + carried(table, 2 * MB)
            assert len(await relay_rows(coord)) == 2
            await check_ledger(coord)

    run(scenario)


def test_the_coordinators_own_relay_and_direct_transfers_pay_no_relay() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            direct = await placed_ticket(coord, 0, 1, MB)
            await relayed_by(coord, 2, COORDINATOR_ID)
            last_resort = await placed_ticket(coord, 0, 2, MB)
            assert (await billing.settle_receipt(coord, machine_id(1), direct))[0]
            assert (await billing.settle_receipt(coord, machine_id(2), last_resort))[0]
            assert await relay_rows(coord) == []
            await check_ledger(coord)

    run(scenario)


def test_a_receipt_served_over_a_punched_link_pays_no_relay() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            await relayed_by(coord, 1, machine_id(RELAY))
            wire = await placed_ticket(coord, 0, 1, 5 * MB)
            booked, paid = await billing.settle_receipt(coord, machine_id(1),
                                                        wire + tickets.DIRECT)
            assert booked and paid > 0  # the holder is paid as ever
            assert await relay_rows(coord) == []
            assert (await balances(coord))[user_account("dave")] == 0
            # the same ticket unmarked afterwards: paid once already, the relay still not
            assert await billing.settle_receipt(coord, machine_id(1), wire) == (False, 0)
            assert await relay_rows(coord) == []
            await check_ledger(coord)

    run(scenario)


def test_audit_reports_a_relay_pay_without_its_receipt() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            await relayed_by(coord, 1, machine_id(RELAY))
            wire = await placed_ticket(coord, 0, 1, MB)
            await billing.settle_receipt(coord, machine_id(1), wire)
            assert await claims.unbacked_payments(coord.db) == []
            _, table = await tariff.current_prices(coord)
            forged = billing.relay_ref("placed:" + machine_id(2) + ":" + "12" * 32 + ":1")
            await bank.book(coord.db, kind="relay", ref=forged, quantity=MB,
                            postings=rules.relay_postings(user_account("dave"), MB, table))
            assert await claims.unbacked_payments(coord.db) == [forged]
            await check_ledger(coord)  # exact, but not backed: `admin audit` fails on it

    run(scenario)


def test_restore_asks_direct_holders_before_relayed_ones_at_equal_balance() -> None:
    async def scenario(tmp):
        async with opened_coord(tmp) as coord:
            relay = "http://203.0.113.7:8601/v1/relay"
            for i in (1, 3):  # bob's and dave's peers are behind NAT, relayed
                await coordinator_peers.announce(
                    coord.db, peer_id=machine_id(i), url=f"{relay}/{machine_id(i)}~{'ab' * 32}",
                    subnet="127.0.0.0/24", space=10**12, upload=None, download=None)
            fids = await store_pack(coord, 0, "fa" * 32, [1, 2, 3, 0])
            pack = await coordinator_packs.get(coord.db, "alice", "fa" * 32)
            holders = await coordinator_peers.many(coord.db, [machine_id(i) for i in range(4)])
            for _ in range(10):  # balances 0, one subnet: only the reachability differs
                order = await repair.fetch_order(coord, pack.fragments, holders)
                assert {f.peer_id for f in order[:2]} == {machine_id(0), machine_id(2)}
            await bank.book(coord.db, kind="upkeep", postings=[
                rules.Posting(user_account("dave"), -7), rules.Posting(rules.BANK, 7)])
            order = await repair.fetch_order(coord, pack.fragments, holders)
            assert order[0].peer_id == machine_id(3)  # the lowest balance still goes first
            assert len(fids) == 4

    run(scenario)
