"""Work allocation by balance (§2.4): placement picks the lowest balances, and over many
backups billed through the real ledger that keeps balances closer together than random
placement does."""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.coordinator import billing, placement
from p2pbak.coordinator.service import Coordinator
from p2pbak.store.db import bank
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import users as coordinator_users
from p2pbak.store.db.bank import user_account
from p2pbak.store.db.peers import Peer
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("db_backend")  # every test on both backends

PACK = 16 * 2**20


def peer(i: int, subnet: str = "10.0.0.0/24") -> Peer:
    return Peer(id=f"{i:032x}", url=f"http://10.0.0.{i}:1", subnet=subnet, space=10**12,
                upload=1, download=1, stored_bytes=0, free_bytes=10**12, first_seen=0,
                last_seen=0, availability=0.9, reputation=1.0, state="active")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-10**9, 10**9), min_size=12, max_size=40), st.integers(0, 2**32))
def test_placement_takes_the_lowest_balances_first(money: list[int], seed: int) -> None:
    peers = [peer(i) for i in range(len(money))]
    balances = {p.id: b for p, b in zip(peers, money, strict=True)}
    chosen = placement.place(peers, PACK, random.Random(seed), balances=balances)
    picked = [balances[p.id] for p in chosen.peers]
    left = [balances[p.id] for p in peers if p not in chosen.peers]
    assert picked[0] == min(money)  # the most negative supplier always comes first
    assert picked == sorted(picked)
    assert not left or max(picked) <= min(left)


def test_distinct_subnets_still_come_before_a_lower_balance() -> None:
    peers = [peer(0, "a"), peer(1, "a"), peer(2, "b")]
    balances = {peers[0].id: -5, peers[1].id: -4, peers[2].id: 100}
    order = placement.order_candidates(peers, random.Random(1), balances)
    assert [p.id for p in order] == [peers[0].id, peers[2].id, peers[1].id]


USERS = 30


async def _simulate(tmp: Path, by_balance: bool, rounds: int) -> list[int]:
    """`rounds` backups by random owners, billed as the grid bills them (charge at commit,
    each supplier paid by receipt); returns every user's final balance."""
    coord = await Coordinator.start(postgres.CURRENT.database(tmp), run_jobs=False)
    try:
        ids = [f"{i + 1:032x}" for i in range(USERS)]
        for i, mid in enumerate(ids):
            await coordinator_users.create_user(
                coord.db, user=f"u{i}", salt=b"s", login_hash=b"h", login_hash_key=b"k",
                keyfile=b"f", machine_id=mid, machine_name="m", secret_hash=b"x")
            await coordinator_peers.announce(coord.db, peer_id=mid, url=f"http://10.0.{i}.1:1",
                                             subnet=f"10.0.{i}.0/24", space=10**12,
                                             upload=None, download=None)
            await coordinator_peers.heartbeat(coord.db, peer_id=mid, url=f"http://10.0.{i}.1:1",
                                              subnet=f"10.0.{i}.0/24", stored_bytes=0,
                                              free_bytes=10**12)
        owners = random.Random(42)
        rng = random.Random(7)
        for r in range(rounds):
            owner = owners.randrange(USERS)
            peers = await coordinator_peers.online(coord.db, 3600, exclude=ids[owner])
            peers = [Peer(**{**p.__dict__, "availability": 0.99}) for p in peers]
            # not by balance: every balance looks equal, so ties fall in random order
            balances = await bank.peer_balances(coord.db, [p.id for p in peers]) \
                if by_balance else dict.fromkeys((p.id for p in peers), 0)
            chosen = placement.place(peers, PACK, rng, balances=balances)
            await billing.charge_backup(coord, f"u{owner}", f"{r:064x}", PACK)
            frags = [coordinator_packs.Fragment(i, f"{r:032x}{i:032x}", chosen.fragment_size,
                                                p.id) for i, p in enumerate(chosen.peers)]
            await coordinator_packs.add_grants(coord.db, f"u{owner}", f"{r:064x}", frags, 2**40)
            pack = coordinator_packs.Pack(f"{r:064x}", 1, len(frags), 1, 1, PACK, 0,
                                          tuple(frags))
            await coordinator_packs.commit(coord.db, f"u{owner}", ids[owner], pack)
            for f in frags:  # each store is paid once its pack is committed
                wire = coord.ticket(op="store", fragment=f.fragment_id, size=f.size,
                                    from_=ids[owner], to=f.peer_id)
                await billing.settle_receipt(coord, f.peer_id, wire)
        assert (await bank.audit(coord.db)).ok
        got = await bank.balances(coord.db, [user_account(f"u{i}") for i in range(USERS)])
        return list(got.values())
    finally:
        await coord.stop()


def test_lowest_balance_first_keeps_balances_closer_than_random() -> None:
    def run(by_balance: bool) -> list[int]:
        with tempfile.TemporaryDirectory() as tmp:
            return asyncio.run(_simulate(Path(tmp), by_balance, rounds=60))

    fair, rand = run(True), run(False)
    assert sum(fair) == sum(rand)  # the same backups, the same total paid in and out
    spread_fair, spread_rand = statistics.pstdev(fair), statistics.pstdev(rand)
    assert spread_fair < 0.8 * spread_rand, (spread_fair, spread_rand)
    assert max(fair) - min(fair) < max(rand) - min(rand)
