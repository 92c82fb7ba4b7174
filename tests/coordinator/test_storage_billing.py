"""Hourly storage billing, set-based, on both backends: every owner pays exactly the market
rule's charge, every holder's account exactly the rule's pay for all each of its peers
holds, the bank the rest; the ledger sums to exactly 0."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak.coordinator import billing, tariff
from p2pbak.coordinator.service import Coordinator
from p2pbak.market import bank as rules
from p2pbak.market.bank import BANK
from p2pbak.store.db import bank, storage, totals
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import users as coordinator_users
from p2pbak.store.db.bank import user_account
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("db_backend")

USERS = ("ann", "ben", "cat")
# machine i belongs to USERS[OWNER[i]]: ann has two machines, so she holds some of her own
OWNER = (0, 1, 2, 0)
AVAILABILITY = (0.9, 0.37, 1 / 3, 0.5)


def mid(i: int) -> str:
    return f"{i + 1:032x}"


async def setup(coord: Coordinator, packs: list[tuple[int, list[int], int]]) -> None:
    for u, user in enumerate(USERS):
        await coordinator_users.create_user(
            coord.db, user=user, salt=b"s", login_hash=b"h", login_hash_key=b"k",
            keyfile=b"f", machine_id=mid(u), machine_name="m", secret_hash=b"x")
    await coordinator_users.add_machine(coord.db, user=USERS[0], machine_id=mid(3),
                                        machine_name="m2", secret_hash=b"x")
    for i in range(len(OWNER)):
        await coordinator_peers.announce(coord.db, peer_id=mid(i), url=f"http://h/{i}",
                                         subnet="127.0.0.0/24", space=10**12, upload=None,
                                         download=None)
    async with coord.db.transaction() as conn:
        for i, a in enumerate(AVAILABILITY):
            await conn.execute("UPDATE peers SET availability = ? WHERE id = ?", (a, mid(i)))
    for n, (owner, holders, size) in enumerate(packs):
        pack_id = f"{n:064x}"
        frags = [coordinator_packs.Fragment(i, f"{n:04x}{i:02x}".ljust(64, "0"), size,
                                            mid(h)) for i, h in enumerate(holders)]
        await coordinator_packs.add_grants(coord.db, USERS[owner], pack_id, frags, 2**40)
        pack = coordinator_packs.Pack(pack_id, 1, len(holders), 1, 1, size * 2, 0,
                                      tuple(frags))
        await coordinator_packs.commit(coord.db, USERS[owner], mid(owner), pack)


def expected(data: dict[str, int], held: list[bank.Holding], owners: dict[str, str],
             seconds: int, table: rules.PriceTable) -> dict[str, int]:
    """Each account's change under the market rules, from the fragments themselves: each
    owner pays storage_charge of its packs, each peer is paid storage_pay of all it holds
    (summed over its owners' fragments here, not read from the kept totals)."""
    out: dict[str, int] = {}
    on_peer: dict[str, tuple[int, float]] = {}
    for h in held:
        size, _ = on_peer.get(h.peer_id, (0, h.availability))
        on_peer[h.peer_id] = (size + h.bytes, h.availability)
    moves = [(user_account(u), -rules.storage_charge(size, seconds, table))
             for u, size in data.items()]
    moves += [(user_account(owners[p]), rules.storage_pay(size, seconds, a, table))
              for p, (size, a) in on_peer.items()]
    for account, amount in moves:
        out[account] = out.get(account, 0) + amount
    out[BANK] = -sum(out.values())
    return out


packs_strategy = st.lists(st.tuples(
    st.integers(0, 2),
    st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
    st.integers(1, 10**11)), min_size=1, max_size=6).map(
        lambda ps: [(o, [h for h in hs if OWNER[h] != o] or [next(
            h for h in range(4) if OWNER[h] != o)], s) for o, hs, s in ps])


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(packs_strategy, st.integers(1, 40 * 86400))
def test_storage_run_books_the_rule_exactly(packs: list, seconds: int) -> None:
    async def scenario(tmp: Path) -> None:
        coord = await Coordinator.start(postgres.CURRENT.database(tmp), run_jobs=False)
        try:
            await setup(coord, packs)
            assert await billing.accrue_storage(coord) == 0  # the first run sets the mark
            async with coord.db.transaction() as conn:
                t = await bank.marker(coord.db, billing.STORAGE_MARK)
                assert t is not None
                await bank.set_marker_in(conn, billing.STORAGE_MARK, t - seconds)
            accounts = [BANK, *(user_account(u) for u in USERS)]
            before = await bank.balances(coord.db, accounts)
            data, held = await bank.holdings(coord.db)
            owners = await bank.peer_owners(coord.db, [h.peer_id for h in held])
            _, table = await tariff.current_prices(coord)
            ran = await billing.accrue_storage(coord)
            assert seconds <= ran <= seconds + 2  # the clock moved on a little
            after = await bank.balances(coord.db, accounts)
            want = expected(data, held, owners, ran, table)
            assert {a: after[a] - before[a] for a in accounts} == \
                {a: want.get(a, 0) for a in accounts}
            audit = await bank.audit(coord.db)
            assert audit.ok and audit.sum == 0 and audit.balance_sum == 0, audit
            assert await totals.drift(coord.db) == 0
            entries = audit.entries
            # owners pay one movement each, holders' accounts one each: not one per pair
            assert entries <= 2 * (len(data) + len(USERS))
        finally:
            await coord.stop()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


def test_a_run_is_booked_once_and_each_owner_sees_its_usage(tmp_path: Path) -> None:
    async def scenario() -> None:
        coord = await Coordinator.start(postgres.CURRENT.database(tmp_path), run_jobs=False)
        try:
            await setup(coord, [(0, [1, 2], 10**9), (1, [0], 5 * 10**8)])
            t = 2_000_000_000
            charges = [(USERS[0], 7, 2 * 10**9 * 60), (USERS[1], 0, 10**9 * 60)]
            pays = [(user_account(USERS[1]), 3), (user_account(USERS[2]), 2)]
            async with coord.db.transaction() as conn:
                assert await storage.book_in(conn, t, charges, pays) == 6
            async with coord.db.transaction() as conn:  # the same run again: nothing
                assert await storage.book_in(conn, t, charges, pays) == 0
            got = await bank.balances(coord.db, [BANK, *(user_account(u) for u in USERS)])
            assert got == {BANK: 2, user_account(USERS[0]): -7, user_account(USERS[1]): 3,
                           user_account(USERS[2]): 2}
            # an owner charged nothing still has its transaction: its usage counts
            assert await bank.usage_since(coord.db, t, USERS[1]) == {"storage": 10**9 * 60}
            assert await bank.usage_since(coord.db, t) == {"storage": 3 * 10**9 * 60}
            audit = await bank.audit(coord.db)
            assert audit.ok and audit.transactions == 3 and audit.entries == 6, audit
        finally:
            await coord.stop()

    asyncio.run(scenario())
