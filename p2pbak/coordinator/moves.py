"""Work allocation of stored data (paper §2.4): once per price interval, fragments held by
accounts that earn more than they spend are flagged to move; the repair machinery copies
them (or rebuilds them, when the holder is offline) onto the lowest-balance suppliers that
need the income (p2pbak.market.allocation).

New packs already go to the lowest balances, but storage, the bulk of every account's
flows, is paid wherever the fragments were first put; without moving some, an account
that stores much and holds little would sink for as long as its data lives.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from p2pbak.coordinator import placement, proven
from p2pbak.coordinator.tariff import current_prices
from p2pbak.market import allocation
from p2pbak.market.caps import UNCAPPED_RATE
from p2pbak.market.prices import effective_space
from p2pbak.store.db import bank
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import tasks as store
from p2pbak.store.db.bank import user_account
from p2pbak.store.db.peers import Peer
from p2pbak.units import DAY, GB

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.moves")

MOVE_MARK = "allocation_moved_at"
MOVE_SHARE = 0.05  # at most this share of the stored fragment bytes moves per day
# (less when the online suppliers' bandwidth caps carry less: market.allocation.move_budget)
HORIZON_DAYS = 7.0  # balances are steered back to 0 over about this long
PER_PEER = 500  # fragments of one donor looked at per run


async def move_job(coord: Coordinator) -> int:
    """Flag the fragments to move this interval (at most once per price interval);
    returns how many. The repair checker queues their packs."""
    db, t = coord.db, int(time.time())
    interval = int(coord.market.price_interval)
    last = await bank.marker(db, MOVE_MARK)
    if last is not None and t - last < interval:
        return 0
    await store.clear_stale_moves(db)
    moves = await plan(coord, interval) if last is not None else []
    flagged = await store.mark_moving(db, [(f.pack, f.index) for f, _ in moves]) \
        if moves else 0
    async with db.transaction() as conn:
        await bank.set_marker_in(conn, MOVE_MARK, t)
    if flagged:
        log.info("work allocation: %d fragment(s) (%d bytes) move toward low balances",
                 flagged, sum(f.size for f, _ in moves))
    return flagged


async def plan(coord: Coordinator, interval: int) -> list[tuple[allocation.Placed, str]]:
    """The moves that steer balances toward 0 (market.allocation.plan_moves)."""
    db = coord.db
    _, held, _ = await bank.held_totals(db)
    # a receiver's room is its counted space (market.proven) less what it holds
    online = await proven.with_counted_room(coord, await coordinator_peers.online(
        db, coord.online_window))
    peers = {p.id: p for p in online}
    for p in await coordinator_peers.offline_holders(db, coord.online_window):
        peers.setdefault(p.id, p)
    known = await bank.owners_and_balances(db)
    owners = {p: known[p][0] for p in peers if p in known}
    balances = {user_account(known[p][0]): known[p][1] for p in peers if p in known}
    accounts = sorted(balances)
    window = max(interval, DAY)  # a rate read over less than a day is mostly noise
    flows = await bank.flows_since(db, accounts, int(time.time()) - window)
    rates = {a: v * DAY / window for a, v in flows.items()}
    _, table = await current_prices(coord)
    live = {p.id for p in online}
    suppliers = [_supplier(p, user_account(owners[p.id]), table.space, p.id in live)
                 for p in peers.values() if p.id in owners]
    donors = [s.peer_id for s in suppliers if allocation.want(
        balances[s.account], rates[s.account], HORIZON_DAYS) < 0]
    placed = [allocation.Placed(*row) for row in await store.placements_on(
        db, donors, PER_PEER)]
    holders = await store.pack_peers(db, sorted({f.pack for f in placed}))
    seconds = min(interval, DAY)
    up = down = 0
    for p in online:  # one pass: 1M peers twice is seconds
        a = placement.availability(p)
        up += allocation.daily_capacity(p.upload, a, seconds, UNCAPPED_RATE)
        down += allocation.daily_capacity(p.download, a, seconds, UNCAPPED_RATE)
    budget = allocation.move_budget(held, MOVE_SHARE * seconds / DAY, up, down)
    return allocation.plan_moves(placed, suppliers, balances, rates, holders, budget,
                                 HORIZON_DAYS, seed=int(time.time()))


def _supplier(peer: Peer, account: str, p_space: int, online: bool) -> allocation.Supplier:
    """µc per byte-day held (§2.5: p_S × availability × usable); room only when online."""
    earn = p_space * effective_space(1.0, placement.availability(peer)) / GB
    return allocation.Supplier(peer.id, account, earn, peer.free_bytes if online else 0,
                               peer.subnet)
