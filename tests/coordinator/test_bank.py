"""The bank against a real coordinator database (SQLite and PostgreSQL): the ledger always
sums to exactly 0, receipts pay once and only the peer a genuine ticket names, freezing and
alerts."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.coordinator import accounts, billing, evidence, tariff
from p2pbak.coordinator.model import MarketSettings
from p2pbak.coordinator.service import Coordinator
from p2pbak.market import bank as rules
from p2pbak.market.proven import SPACE_FLOOR
from p2pbak.market.resources import prices
from p2pbak.net import tickets
from p2pbak.store.db import bank
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import users as coordinator_users
from p2pbak.store.db.bank import PriceRow, user_account
from p2pbak.units import DAY
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends

USERS = ("alice", "bob", "carol", "dave")
MB = 1_000_000


def machine_id(i: int) -> str:
    return f"{i + 1:032x}"


async def open_coord(path: Path, **market: Any) -> Coordinator:
    coord = await Coordinator.start(postgres.CURRENT.database(path), run_jobs=False,
                                    market=MarketSettings(**market))
    for i, user in enumerate(USERS):
        await coordinator_users.create_user(
            coord.db, user=user, salt=b"s", login_hash=b"h", login_hash_key=b"k",
            keyfile=b"f", machine_id=machine_id(i), machine_name="m", secret_hash=b"x")
        await coordinator_peers.announce(coord.db, peer_id=machine_id(i),
                                         url=f"http://127.0.0.1:{9000 + i}",
                                         subnet="127.0.0.0/24", space=10**12, upload=None,
                                         download=None)
    return coord


@contextlib.asynccontextmanager
async def opened_coord(path: Path, **market: Any) -> AsyncIterator[Coordinator]:
    """`open_coord`, stopped on leaving."""
    coord = await open_coord(path, **market)
    try:
        yield coord
    finally:
        await coord.stop()


async def store_pack(coord: Coordinator, owner: int, pack_id: str,
                     holders: list[int], size: int = MB) -> list[str]:
    """Commit a pack of `owner` with one fragment of `size` bytes on each holder."""
    frags = [coordinator_packs.Fragment(i, f"{owner:02x}{i:02x}{pack_id[:4]}".ljust(64, "0"),
                                        size, machine_id(h)) for i, h in enumerate(holders)]
    await coordinator_packs.add_grants(coord.db, USERS[owner], pack_id, frags, 2**40)
    pack = coordinator_packs.Pack(pack_id, 1, len(holders), 1, 1, size, 0, tuple(frags))
    await coordinator_packs.commit(coord.db, USERS[owner], machine_id(owner), pack)
    return [f.fragment_id for f in frags]


def run(scenario: Callable[[Path], Awaitable[None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


async def check_ledger(coord: Coordinator) -> bank.Audit:
    audit = await bank.audit(coord.db)
    assert audit.ok, audit
    assert audit.sum == 0 and audit.balance_sum == 0
    return audit


def ticket(coord: Coordinator, op: str, frm: int, to: int, size: int,
           fragment: str = "ab" * 32, via: str = "") -> str:
    return coord.ticket(op=op, fragment=fragment, size=size, from_=machine_id(frm),
                        to=machine_id(to), via=via)


async def via(coord: Coordinator, to: int) -> str:
    """The relay carrying machine `to`, as the coordinator's ticket callers look it up."""
    return (await coord.relays_of([machine_id(to)])).get(machine_id(to), "")


async def placed_ticket(coord: Coordinator, frm: int, to: int, size: int) -> str:
    """A store ticket whose work is proven: `frm` committed a pack with that fragment on
    `to` (the evidence a store receipt needs)."""
    fid = secrets.token_hex(32)
    frag = coordinator_packs.Fragment(0, fid, size, machine_id(to))
    pack_id = secrets.token_hex(32)
    await coordinator_packs.add_grants(coord.db, USERS[frm], pack_id, [frag], 2**40)
    await coordinator_packs.commit(coord.db, USERS[frm], machine_id(frm), coordinator_packs.Pack(
        pack_id, 1, 1, 1, 1, size, 0, (frag,)))
    return ticket(coord, "store", frm, to, size, fid, await via(coord, to))


async def acked_ticket(coord: Coordinator, frm: int, to: int, size: int, fragment: str) -> str:
    """A fetch ticket its receiver `frm` acknowledged (the evidence a fetch receipt needs)."""
    wire = ticket(coord, "fetch", frm, to, size, fragment, await via(coord, to))
    await evidence.acknowledge(coord, machine_id(frm), wire)
    return wire


# -- random sequences of operations -------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("backup"), st.integers(0, 3), st.integers(1, 10**10)),
    st.tuples(st.just("store"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 10**9),
              st.booleans()),
    st.tuples(st.just("fetch"), st.integers(0, 3), st.integers(1, 10**9), st.booleans()),
    st.tuples(st.just("storage"), st.integers(1, 30 * 86400)),
    st.tuples(st.just("upkeep"), st.integers(0, 3), st.integers(0, 10**9),
              st.integers(0, 10**9)),
    st.tuples(st.just("price"), st.floats(0.01, 100), st.floats(0.01, 100)),
), min_size=1, max_size=12)


async def apply(coord: Coordinator, op: tuple, frags: list[str], n: int) -> None:
    kind = op[0]
    if kind == "backup":
        await billing.charge_backup(coord, USERS[op[1]], f"{n:064x}", op[2])
    elif kind == "store":
        wire = await placed_ticket(coord, op[1], op[2], op[3]) if op[1] != op[2] else \
            ticket(coord, "store", op[1], op[2], op[3])
        for _ in range(2 if op[4] else 1):  # a replay books nothing
            await billing.settle_receipt(coord, machine_id(op[2]), wire)
    elif kind == "fetch":  # alice fetching her own fragment (retrieval) or bob's (upkeep)
        holder = 1 + op[1] % 2
        wire = await acked_ticket(coord, 0 if op[3] else 3, holder, op[2], frags[holder - 1])
        await billing.settle_receipt(coord, machine_id(holder), wire)
    elif kind == "storage":
        async with coord.db.transaction() as conn:  # pretend the last run was op[1] s ago
            t = await bank.marker(coord.db, billing.STORAGE_MARK) or 0
            await bank.set_marker_in(conn, billing.STORAGE_MARK, t - op[1])
        await billing.accrue_storage(coord)
    elif kind == "upkeep":
        await billing.pay_upkeep(coord, [(machine_id(op[1]), op[2], op[3])], f"repair:{n}")
    else:
        p = prices(op[1], op[2])
        await bank.add_price(coord.db, PriceRow(
            at=0, rule="safe", p_upload=op[1], p_download=op[2],
            prices=rules.PriceTable.from_prices(p, tariff.OVERHEADS).to_dict(), g=None,
            supply=None, demand=None, state={"rule": "safe"}))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_ledger_sums_to_zero_after_every_operation(sequence: list[tuple]) -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            frags = await store_pack(coord, 0, "aa" * 32, [1, 2])
            await billing.accrue_storage(coord)  # first run: sets the mark, books nothing
            for n, op in enumerate(sequence):
                await apply(coord, op, frags, n)
                audit = await check_ledger(coord)
                entries = await coord.db.all("SELECT amount FROM entries")
                assert sum(r[0] for r in entries) == 0
                assert audit.entries % 2 == 0  # every movement is two rows

    run(scenario)


# -- receipts -----------------------------------------------------------------------------

def test_replayed_receipt_pays_nothing_the_second_time() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            wire = await placed_ticket(coord, 0, 1, 50 * MB)
            booked, paid = await billing.settle_receipt(coord, machine_id(1), wire)
            _, table = await tariff.current_prices(coord)
            assert booked and paid == table.download * 50 * MB // rules.GB > 0
            bob = await bank.balance(coord.db, user_account("bob"))
            assert bob == paid
            assert await billing.settle_receipt(coord, machine_id(1), wire) == (False, 0)
            assert await bank.balance(coord.db, user_account("bob")) == bob
            await check_ledger(coord)

    run(scenario)


@pytest.mark.parametrize("case", ["forged", "other peer", "delete op", "garbage", "too old"])
def test_bad_receipt_is_refused_and_pays_nothing(case: str) -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            if case == "forged":
                wire = tickets.issue(Ed25519PrivateKey.generate(), op="store",
                                     fragment="ab" * 32, size=MB, from_=machine_id(0),
                                     to=machine_id(1))
            elif case == "other peer":  # a genuine ticket, handed in by a peer it does not name
                wire = ticket(coord, "store", 0, 2, MB)
            elif case == "delete op":
                wire = ticket(coord, "delete", 0, 1, MB)
            elif case == "too old":
                wire = tickets.issue(coord.signing_key, op="store", fragment="ab" * 32,
                                     size=MB, from_=machine_id(0), to=machine_id(1),
                                     now=0)
            else:
                wire = "not.a-ticket"
            with pytest.raises(billing.ReceiptRefused):
                await billing.settle_receipt(coord, machine_id(1), wire)
            audit = await check_ledger(coord)
            assert audit.entries == 0 and audit.transactions == 0

    run(scenario)


def test_concurrent_receipts_leave_exact_balances() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            _, table = await tariff.current_prices(coord)
            sizes = [(i * 7919) % (64 * MB) + 1 for i in range(200)]
            wires = [await placed_ticket(coord, 0, 1 + i % 3, s) for i, s in enumerate(sizes)]
            results = await asyncio.gather(*(
                billing.settle_receipt(coord, machine_id(1 + i % 3), w)
                for i, w in enumerate(wires)))
            assert all(booked for booked, _ in results)
            for j, user in enumerate(("bob", "carol", "dave")):
                want = sum(table.download * s // rules.GB for i, s in enumerate(sizes)
                           if i % 3 == j)
                assert await bank.balance(coord.db, user_account(user)) == want
            await check_ledger(coord)

    run(scenario)


def test_retrieval_charges_the_owner_and_repair_fetch_the_bank() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            frags = await store_pack(coord, 0, "cd" * 32, [1, 2])
            own = await acked_ticket(coord, 0, 1, MB, frags[0])
            await billing.settle_receipt(coord, machine_id(1), own)
            _, table = await tariff.current_prices(coord)
            assert await bank.balance(coord.db, user_account("alice")) == \
                -table.retrieval * MB // rules.GB
            other = await acked_ticket(coord, 3, 2, MB, frags[1])  # dave fetching alice's data
            await billing.settle_receipt(coord, machine_id(2), other)
            assert await bank.balance(coord.db, user_account("dave")) == 0
            assert await bank.balance(coord.db, user_account("carol")) == \
                table.upload * MB // rules.GB
            await check_ledger(coord)

    run(scenario)


# -- freezing and alerts ------------------------------------------------------------------

def test_freezing_and_alerts_follow_the_balance() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, max_deficit=1000) as coord:
            assert await accounts.backup_refusal(coord, "alice") is None
            _, table = await tariff.current_prices(coord)
            # a backup costing 800 µc: past the alert line (750), not frozen
            await billing.charge_backup(coord, "alice", "01" * 32, 800 * rules.GB // table.backup)
            state = await accounts.account_state(coord, "alice")
            assert state.low and not state.frozen and state.health.startswith("low")
            assert await bank.alert(coord.db, "alice") is not None  # raised by the charge
            assert (await bank.alert(coord.db, "alice"))[0] == "low"  # type: ignore[index]
            assert await accounts.check_accounts(coord) == []  # no SMTP: nothing mailed
            await billing.charge_backup(coord, "alice", "02" * 32, 300 * rules.GB // table.backup)
            refusal = await accounts.backup_refusal(coord, "alice")
            assert refusal is not None and "frozen" in refusal and "\n" not in refusal
            assert (await bank.alert(coord.db, "alice"))[0] == "frozen"  # type: ignore[index]
            # earning (a receipt for alice's peer) brings it back above the limit
            await billing.settle_receipt(coord, machine_id(0),
                                         await placed_ticket(coord, 1, 0, rules.GB))
            assert await accounts.backup_refusal(coord, "alice") is None
            assert await bank.alert(coord.db, "alice") is None  # cleared by the earning
            await check_ledger(coord)

    run(scenario)


def test_credits_are_parsed_and_shown_exactly() -> None:
    assert accounts.parse_credits("0.000001") == 1
    assert accounts.parse_credits("10") == 10 * rules.MICRO
    assert accounts.credits(-1_500_000) == "-1.5" and accounts.credits(7) == "0.000007"
    for bad in ("-1", "0.0000001", "ten", "nan"):
        with pytest.raises(Exception, match="cannot read credits"):
            accounts.parse_credits(bad)


def test_email_only_to_addresses() -> None:
    assert accounts.email_address("ann@example.org") == "ann@example.org"
    assert accounts.email_address("ann") is None and accounts.email_address("a@b") is None


def test_the_address_given_wins_over_the_user_name() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            for user, given in (("ann@example.org", None), ("bea", "bea@example.org")):
                await coordinator_users.create_user(
                    coord.db, user=user, salt=b"s", login_hash=b"h", login_hash_key=b"k",
                    keyfile=b"f", machine_id=user[0] * 32, machine_name="m",
                    secret_hash=b"x", email=given)
            assert await accounts.alert_address(coord, "ann@example.org") == "ann@example.org"
            assert await accounts.alert_address(coord, "bea") == "bea@example.org"
            await accounts.set_alert_address(coord, "ann@example.org", "ann@work.example")
            assert await accounts.alert_address(coord, "ann@example.org") == "ann@work.example"
            await accounts.set_alert_address(coord, "bea", None)
            assert await accounts.alert_address(coord, "bea") is None  # "bea" is no address

    run(scenario)


def test_audit_catches_a_broken_ledger() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:
            await billing.charge_backup(coord, "alice", "03" * 32, rules.GB)
            assert (await check_ledger(coord)).entries == 2
            async with coord.db.transaction() as conn:  # one lone row: sum and pairing break
                await conn.execute("INSERT INTO entries(txn, movement, account, amount)"
                                   " VALUES (1, 5, 'bank', 1)")
            audit = await bank.audit(coord.db)
            assert not audit.ok and audit.sum == 1 and audit.unpaired == 1
            assert audit.drifted == 1  # the bank's cached balance no longer matches

    run(scenario)


def smtp_server() -> tuple[int, list[bytes], threading.Thread]:
    """A one-session SMTP server on loopback that keeps the messages it is sent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got: list[bytes] = []

    def session() -> None:
        conn, _ = srv.accept()
        with conn, srv, conn.makefile("rb") as lines:
            conn.sendall(b"220 test ESMTP\r\n")
            body: list[bytes] | None = None
            for line in lines:
                if body is not None:
                    if line == b".\r\n":
                        got.append(b"".join(body))
                        body = None
                        conn.sendall(b"250 queued\r\n")
                    else:
                        body.append(line)
                    continue
                verb = line[:4].upper()
                if verb == b"DATA":
                    body = []
                    conn.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=session, daemon=True)
    thread.start()
    return srv.getsockname()[1], got, thread


def test_new_alert_is_mailed_once() -> None:
    port, got, thread = smtp_server()

    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp, max_deficit=1000, smtp_host="127.0.0.1",
                                smtp_port=port, smtp_from="bank@example.org") as coord:
            await coordinator_users.create_user(  # a name that is no address, and one given
                coord.db, user="ann", salt=b"s", login_hash=b"h",
                login_hash_key=b"k", keyfile=b"f", machine_id="f" * 32, machine_name="m",
                secret_hash=b"x", email="ann@example.org")
            _, table = await tariff.current_prices(coord)
            await billing.charge_backup(coord, "ann", "04" * 32,
                                        900 * rules.GB // table.backup)
            assert await accounts.check_accounts(coord) == [("ann", "low")]
            assert await accounts.check_accounts(coord) == []  # mailed once

    run(scenario)
    thread.join(10)
    assert len(got) == 1
    mail = got[0].decode()
    assert "To: ann@example.org" in mail and "From: bank@example.org" in mail
    assert "low" in mail and "p2pbak supply set" in mail


def test_no_deficit_before_supplying_then_two_weeks_of_storage_at_least_ten_credits() -> None:
    async def scenario(tmp: Path) -> None:
        async with opened_coord(tmp) as coord:  # no --max-deficit: the per-account rule
            fresh = await accounts.account_state(coord, "bob")
            assert fresh.limit == 0 and fresh.frozen and fresh.unproven  # no peer online
            assert fresh.to_dict()["supplied"] is False and "peer run" in fresh.health
            refusal = await accounts.backup_refusal(coord, "bob")
            assert refusal is not None and "run a peer (`p2pbak peer run`)" in refusal
            await coordinator_peers.heartbeat(coord.db, peer_id=machine_id(1), url="http://x:1",
                                              subnet="x", stored_bytes=0, free_bytes=10**12)
            _, table = await tariff.current_prices(coord)
            first = rules.storage_pay(SPACE_FLOOR, DAY, 0.5, table)  # its floor, one day
            online = await accounts.account_state(coord, "bob")
            assert online.limit == first > 0 and not online.frozen and online.unproven
            assert (await accounts.account_state(coord, "carol")).limit == 0  # still none
            wire = await placed_ticket(coord, 0, 1, 10**6)  # bob's peer did proven work
            await billing.settle_receipt(coord, machine_id(1), wire)
            paid = await accounts.account_state(coord, "bob")
            assert paid.limit == 10 * rules.MICRO and not paid.unproven
            assert paid.to_dict()["supplied"] is True
            await store_pack(coord, 1, "0b" * 32, [2, 3], size=3 * 10**12)
            daily = -(-table.storage * 3 * 10**12 // rules.GB)
            assert (await accounts.account_state(coord, "bob")).limit == 14 * daily

    run(scenario)
