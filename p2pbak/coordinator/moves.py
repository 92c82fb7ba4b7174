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
from p2pbak.market import proven as rules
from p2pbak.market.caps import UNCAPPED_RATE
from p2pbak.market.prices import USABLE_FRACTION, effective_space
from p2pbak.store.db import bank, moving
from p2pbak.store.db import tasks as store
from p2pbak.store.db.bank import user_account
from p2pbak.store.db.peers import ACTIVE
from p2pbak.units import DAY, GB

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.moves")

MOVE_MARK = "allocation_moved_at"
MOVE_SHARE = 0.05  # at most this share of the stored fragment bytes moves per day
# (less when the online suppliers' bandwidth caps carry less: market.allocation.move_budget)
HORIZON_DAYS = 7.0  # balances are steered back to 0 over about this long
PER_PEER = 500  # fragments of one donor looked at per run
RECEIVERS = 1024  # receivers read first (x4 while they may fall short: moves._settled)


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
    """The moves that steer balances toward 0 (market.allocation.plan_moves), given only
    the peers it can use: the donors that can shed a fragment and, in allocation order,
    the first receivers, as many as the plan's searches reach (store.db.moving picks
    both; a million peers are never read)."""
    db, t = coord.db, int(time.time())
    window = max(interval, DAY)  # a rate read over less than a day is mostly noise
    terms = moving.Want(HORIZON_DAYS, DAY / window)
    _, table = await current_prices(coord)
    at = moving.Window(t - window, ACTIVE, t - coord.online_window,
                       t - proven.cap_window(coord), rules.SPACE_FLOOR)
    per_byte = table.space * USABLE_FRACTION / GB
    donors, got = await moving.movers(db, at, terms, per_byte, placement.CLAMP, RECEIVERS)
    ids, limit, budget = [d.peer_id for d in donors], RECEIVERS, None
    while donors:  # the first `limit` receivers in allocation order, more if they fall short
        # which of them hold which pack: all the plan asks about the holders
        rows, holders = await store.placements_on(db, ids, PER_PEER,
                                                  [r.peer_id for r in got])
        placed = [allocation.Placed(*row) for row in rows]
        if not placed:
            break
        budget = await _budget(coord, min(interval, DAY)) if budget is None else budget
        seen = {r.peer_id for r in got}
        suppliers, balances, rates = _suppliers(
            got + [d for d in donors if d.peer_id not in seen], table.space, window)
        out = allocation.plan_moves(placed, suppliers, balances, rates, holders, budget,
                                    HORIZON_DAYS, seed=t)
        if len(got) < limit or _settled(got, placed, holders, out):
            return out
        limit *= 4
        _, got = await moving.movers(db, at, terms, per_byte, placement.CLAMP, limit)
    return []


def _settled(got: list[moving.Mover], placed: list[allocation.Placed],
             holders: dict[int, set[str]], out: list[tuple[allocation.Placed, str]]) -> bool:
    """Whether the receivers read were enough: whether every search of plan_moves
    stopped among them, so that those after them could not change the plan. It did when
    more of them than any pack's holders among them (moves included) still have room
    for the largest fragment at the end: rooms only shrink, so each search met one it
    could not pass over."""
    room = {m.peer_id: m.room for m in got}
    taken = {pk: len(peers) for pk, peers in holders.items()}
    for f, to in out:
        room[to] -= f.size
        taken[f.pack] = taken.get(f.pack, 0) + 1
    largest = max(f.size for f in placed)
    return sum(r >= largest for r in room.values()) > max(taken.values(), default=0)


async def _budget(coord: Coordinator, seconds: int) -> int:
    """Bytes the day's moves may carry (market.allocation.move_budget), from Σ fragment
    bytes and the online peers' bandwidth, both summed by the database."""
    held = await moving.fragment_bytes(coord.db)
    up, down = await moving.capacity(coord.db, ACTIVE, int(time.time()) - coord.online_window,
                                     seconds, placement.CLAMP, UNCAPPED_RATE)
    return allocation.move_budget(held, MOVE_SHARE * seconds / DAY, up, down)


def _suppliers(movers: list[moving.Mover], p_space: int, window: int
               ) -> tuple[list[allocation.Supplier], dict[str, int], dict[str, float]]:
    """plan_moves' suppliers, and their accounts' balances and net rates (µc/day)."""
    suppliers = [_supplier(m, p_space) for m in movers]
    balances = {s.account: m.balance for s, m in zip(suppliers, movers, strict=True)}
    rates = {s.account: m.flow * DAY / window for s, m in zip(suppliers, movers, strict=True)}
    return suppliers, balances, rates


def _supplier(m: moving.Mover, p_space: int) -> allocation.Supplier:
    """µc per byte-day held (§2.5: p_S × availability × usable); room only when online."""
    earn = p_space * effective_space(1.0, placement.clamped(m.availability)) / GB
    return allocation.Supplier(m.peer_id, user_account(m.user), earn, m.room, m.subnet)
