"""The running market over simulated days (§2.4, §5): users who move their sliders in
answer to the coordinator's prices (the simulator's CES agents, Definition 1) through the
supply-caps path, backups placed lowest balance first and billed through the real ledger,
retrievals and storage accrued, the price job run once a day on an advanced clock. The
price history moves toward g = 0 and the ledger sums to exactly 0 after every day.

Balances are not asserted to approach 0: with as few peers as here the code chooser puts
a fragment on every online peer, so placement has no one to leave out, and storage, the
bulk of what users pay, is paid per GB held wherever fragments were first placed."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from p2pbak.coordinator import billing, placement
from p2pbak.coordinator import prices as price_job
from p2pbak.coordinator.billing import DAY, MarketSettings
from p2pbak.coordinator.service import Coordinator
from p2pbak.market.agents import Economy, make_economy, supply_at
from p2pbak.market.caps import caps_from_supply
from p2pbak.market.resources import Resources
from p2pbak.market.supply import GB
from p2pbak.store import bank, coordinator_packs, coordinator_peers, coordinator_users, garbage
from p2pbak.store.bank import PriceRow

USERS = 12
DAYS = 20
T0 = 1_900_000_000  # the simulated clock's first day (s)
FREE = 10**14  # free disk every peer reports: room for any fragment
TOLERANCE = 1e-3  # max |g| the last days must stay below


class Clock:
    """time.time for every module at once, moved by hand."""

    def __init__(self) -> None:
        self.t = float(T0)

    def __call__(self) -> float:
        return self.t


@dataclass
class Market:
    coord: Coordinator
    economy: Economy
    ids: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    daily: dict[int, str] = field(default_factory=dict)  # user → yesterday's backup pack
    base: dict[int, tuple[str, str]] = field(default_factory=dict)  # user → (fragment, peer)
    receipts: dict[str, list[str]] = field(default_factory=dict)  # peer → unpaid tickets
    packs: int = 0


def user(i: int) -> str:
    return f"u{i}"


async def register(coord: Coordinator) -> list[str]:
    ids = [f"{i + 1:032x}" for i in range(USERS)]
    for i, mid in enumerate(ids):
        await coordinator_users.create_user(
            coord.db, user=user(i), salt=b"s", login_hash=b"h", login_hash_key=b"k",
            keyfile=b"f", machine_id=mid, machine_name="m", secret_hash=b"x")
        await coordinator_peers.announce(coord.db, peer_id=mid, url=f"http://10.0.{i}.1:1",
                                         subnet=f"10.0.{i}.0/24", space=0, upload=0,
                                         download=0)
    return ids


async def move_sliders(m: Market) -> None:
    """Every user sets the caps its agent chooses at today's prices (the PUT /v1/supply
    path), and its peer reports in."""
    p, _ = await billing.current_prices(m.coord)
    chosen = supply_at(m.economy, np.array(p.as_tuple()))
    for i, mid in enumerate(m.ids):
        peer = await coordinator_peers.get(m.coord.db, mid)
        assert peer is not None
        caps = caps_from_supply(Resources(*map(float, chosen[i])),
                                placement.availability(peer))
        assert await bank.set_peer_caps(m.coord.db, mid, *caps)
        await coordinator_peers.heartbeat(m.coord.db, peer_id=mid, url=peer.url,
                                          subnet=peer.subnet, stored_bytes=0,
                                          free_bytes=FREE)


async def backup(m: Market, owner: int, size: int) -> tuple[str, str, str]:
    """A pack placed lowest balance first, committed and charged; each supplier's store
    ticket kept for its receipt. Returns (pack id, a fragment id, its holder)."""
    db, mid = m.coord.db, m.ids[owner]
    peers = await coordinator_peers.online(db, DAY, exclude=mid)
    balances = await bank.peer_balances(db, [p.id for p in peers])
    chosen = placement.place(peers, size, m.rng, balances=balances)
    m.packs += 1
    pack_id = f"{m.packs:064x}"
    frags = [coordinator_packs.Fragment(j, f"{m.packs:060x}{j:04x}", chosen.fragment_size,
                                        p.id) for j, p in enumerate(chosen.peers)]
    await coordinator_packs.add_grants(db, user(owner), pack_id, frags, 2**62)
    pack = coordinator_packs.Pack(pack_id, chosen.code.k, chosen.code.n, 1, 1, size, 0,
                                  tuple(frags))
    assert await coordinator_packs.commit(db, user(owner), mid, pack)
    assert await billing.charge_backup(m.coord, user(owner), pack_id, size)
    for f in frags:
        m.receipts.setdefault(f.peer_id, []).append(m.coord.ticket(
            op="store", fragment=f.fragment_id, size=f.size, from_=mid, to=f.peer_id))
    return pack_id, frags[0].fragment_id, frags[0].peer_id


async def retrieve(m: Market, owner: int, size: int) -> None:
    """The owner fetches `size` bytes of its own data: a retrieval receipt (op. 3)."""
    fragment, holder = m.base[owner]
    m.receipts.setdefault(holder, []).append(m.coord.ticket(
        op="fetch", fragment=fragment, size=size, from_=m.ids[owner], to=holder))


async def hand_in(m: Market) -> None:
    """Every peer hands in the day's receipts in one batch, as the peer agent does."""
    for peer_id, wires in sorted(m.receipts.items()):
        paid = await billing.settle_receipts(m.coord, peer_id, wires)
        assert all(r == (True, r[1]) and r[1] > 0 for r in paid), paid
    m.receipts.clear()


async def day(m: Market, clock: Clock, k: int) -> None:
    """Day k: sliders, each user's backup (yesterday's replaced) and retrieval of the
    agent's service mix d_i; storage accrued just before the day ends; the price job."""
    clock.t = T0 + k * DAY + 60
    await move_sliders(m)
    services = m.economy.services
    for i in m.rng.sample(range(USERS), USERS):
        pack_id, _, _ = await backup(m, i, int(services[i, 0] * GB))
        if i in m.daily:
            await garbage.drop_packs(m.coord.db, user(i), [m.daily[i]])
        m.daily[i] = pack_id
        await retrieve(m, i, int(services[i, 2] * GB))
    await hand_in(m)
    clock.t = T0 + (k + 1) * DAY - 1
    await billing.billing_job(m.coord)
    clock.t = T0 + (k + 1) * DAY
    assert await price_job.price_job(m.coord) is not None
    audit = await bank.audit(m.coord.db)
    assert audit.ok and audit.sum == 0 and audit.balance_sum == 0, audit


async def simulate(tmp: Path, clock: Clock) -> list[PriceRow]:
    """Open the market (each user's existing data backed up the day before, the initial
    price row), run DAYS days; returns the price history."""
    coord = await Coordinator.start(tmp / "c.db", run_jobs=False,
                                    market=MarketSettings(price_interval=DAY))
    try:
        m = Market(coord, make_economy(USERS, seed=11), await register(coord))
        clock.t = T0 - DAY
        await move_sliders(m)
        for i in range(USERS):  # what each user had stored before the market opened
            s = m.economy.services[i]
            _, frag, holder = await backup(m, i, int((s[1] - s[0]) * GB))
            m.base[i] = (frag, holder)
        await hand_in(m)
        await billing.billing_job(coord)
        clock.t = T0
        first = await price_job.price_job(coord)
        assert first is not None and first.note == "initial prices"
        for k in range(DAYS):
            await day(m, clock, k)
        return await bank.price_history(coord.db, 1000)
    finally:
        await coord.stop()


@pytest.mark.slow
def test_days_of_trading_drive_the_price_history_toward_g_zero(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    with tempfile.TemporaryDirectory() as tmp:
        history = asyncio.run(simulate(Path(tmp), clock))
    priced = [r for r in history if r.g is not None]
    assert len(priced) == DAYS  # every day had a supply and a demand to read
    gaps = [max(map(abs, r.g)) for r in priced]  # type: ignore[arg-type]
    assert max(gaps[-5:]) < gaps[0] / 5 and max(gaps[-5:]) < TOLERANCE, gaps
    # the sliders answered the prices: S moved, and p settled away from where it began
    first, last = (Resources.from_dict(r.supply) for r in (priced[0], priced[-1]))  # type: ignore[arg-type]
    assert abs(last.upload / first.upload - 1) > 0.05
    assert max(abs(history[-1].p_upload - 1), abs(history[-1].p_download - 1)) > 0.5
    lo, hi = price_job.PRICE_BOUNDS
    assert all(lo < r.p_upload < hi and lo < r.p_download < hi for r in history)
