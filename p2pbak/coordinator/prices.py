"""The daily price job (§4–5) and the supply quote behind `p2pbak supply show` (§3.1).

Price job, once per price interval: aggregate maximum supply S (every recently seen peer's
caps bounded by the work it has proven (market.proven), space as effective space, each
within the ratio constraints of eq. 4) and the demand d the ledger booked over the
interval (Table 1 services → resources through q = Aᵀp);
then g(p) (Definition 3) and the safe update of p2pbak.market.update, whose state is kept
in the price history row. The overheads behind q = Aᵀp are measured, not assumed (§3.3):
the erasure factor and holders' availability of what is stored, and the repair and testing
the bank paid over the interval; the row keeps them, and the next interval bills with them.
Without both a supply and a demand there is no market to read: the row keeps the prices
and says so. Nor when S and d have not moved since the last move (users have not answered
it yet): the update holds (market.hold) and the row says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from p2pbak.config import market_caps
from p2pbak.coordinator import placement, proven
from p2pbak.coordinator.tariff import OVERHEADS, current_overheads, current_prices
from p2pbak.errors import P2pbakError
from p2pbak.market import bank as rules
from p2pbak.market.caps import mix_from_usage, supply_from_caps
from p2pbak.market.equilibrium import aggregate_demand, g
from p2pbak.market.prices import Flows, Overheads, measured_overheads, repair_reserve
from p2pbak.market.resources import Resources, Services, prices
from p2pbak.market.settings import Snapshot, balance
from p2pbak.market.supply import (
    DEFAULT_MIX,
    DEFAULT_SLACK,
    RatioLimits,
    backup_balance,
)
from p2pbak.market.update import (
    COORDINATOR,
    RULES,
    UpdateState,
    floor_supply,
    held_reason,
    new_state,
    update,
)
from p2pbak.store.db import bank
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db.bank import PriceRow
from p2pbak.units import DAY, GB

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

# Caps are the supply users state, and they rarely move: a gap that prices cannot close
# (S does not answer p) must not walk a price to 0 or to infinity.
PRICE_BOUNDS = (1e-3, 1e3)
PRIOR_AVAILABILITY = 0.5  # §2.2: 12 h/day, for a machine without a peer yet
MIX_WINDOW = 30 * DAY  # a user's own B:S:R mix is read from this much history


def check_rule(rule: str) -> str:
    """A price update rule name, or a one-line error naming the choices."""
    if rule not in RULES:
        raise P2pbakError(f"unknown price rule {rule!r}: choose {' or '.join(RULES)}")
    return rule


def _positive(r: Resources | None) -> bool:
    return r is not None and min(r.as_tuple()) > 0


async def measure_overheads(coord: Coordinator, since: int | None,
                            until: int) -> Callable[[Resources], Overheads]:
    """market.prices.measured_overheads of what is held now and of what the ledger booked
    over [since, until) (no interval: the prior's repair load, the storage factor), as a
    function of the prices q is to be charged at (the upkeep paid, in GB at those prices)."""
    stored, fragment_bytes, weighted = await bank.held_totals(coord.db)
    booked = Flows() if since is None else await bank.overhead_flows(coord.db, since, until)
    # the totals stand for every holder: measured_overheads needs only Σ bytes, Σ bytes·a
    pairs = [(fragment_bytes, min(1.0, weighted / fragment_bytes))] if fragment_bytes else []

    def at(p: Resources) -> Overheads:
        bandwidth = rules.MICRO * (p.upload + p.download)
        return measured_overheads(stored, pairs, booked, bandwidth, OVERHEADS)

    return at


async def measured_demand(coord: Coordinator, since: int, until: int,
                          overheads: Overheads | None = None) -> Resources | None:
    """Aggregate resource demand per day over [since, until) from the ledger (None if none),
    through `overheads` (default: those of today's q)."""
    used = await bank.usage_since(coord.db, since)
    seconds = max(1, until - since)
    mix = mix_from_usage(used.get("backup", 0), used.get("storage", 0),
                         used.get("retrieval", 0), seconds)
    if mix is None:  # nothing accrued yet: what is stored now
        stored, _, _ = await bank.held_totals(coord.db)
        days = seconds / DAY
        mix = Services(used.get("backup", 0) / GB / days, stored / GB,
                       used.get("retrieval", 0) / GB / days) if stored else None
    if mix is None:
        return None
    demand = aggregate_demand([mix], overheads or await current_overheads(coord))
    return demand if _positive(demand) else None


def default_demand(overheads: Overheads = OVERHEADS) -> Resources:
    """The demand ratios assumed before any was measured: one user of the default mix."""
    return aggregate_demand([DEFAULT_MIX], overheads)


async def maximum_supply(coord: Coordinator, limits: RatioLimits | None,
                         window: int) -> Resources | None:
    """Σ over peers seen within `window` s of their counted caps (market.proven: the
    caps, bounded by proven work) in market units, within eq. (4); None if nothing at all
    is supplied (a resource nobody supplies yet is floored by the update,
    market.update.floor_supply, so that its price rises)."""
    total = Resources(*await proven.online_supply(coord, window, limits))
    return total if max(total.as_tuple()) > 0 else None


async def price_job(coord: Coordinator) -> PriceRow | None:
    """Write the next price history row when a price interval has passed (or none exists)."""
    settings = coord.market
    last = await bank.latest_price(coord.db)
    t = int(time.time())
    if last is not None and t - last.at < settings.price_interval:
        return None
    p, _ = await current_prices(coord)
    state = UpdateState.from_dict(last.state) if last is not None and last.state else None
    # over the interval priced: each µc of upkeep is charged back once, in the next one
    overheads_at = await measure_overheads(coord, None if last is None else last.at, t)
    o = overheads_at(p)
    if last is None:
        return await _record(coord, t, p, o, state, None, None, None, "initial prices")
    demand = await measured_demand(coord, last.at, t, repair_reserve(o, OVERHEADS))
    limits = RatioLimits.from_demand(demand) if demand is not None else None
    window = max(int(settings.price_interval), coord.online_window)
    supply = await maximum_supply(coord, limits, window)
    if supply is None or demand is None:
        why = "no supply" if supply is None else "no demand"
        return await _record(coord, t, p, o, state, None, supply, demand,
                             f"{why} measured: prices held")
    # S and d within their measured day-to-day noise of what the last move was computed
    # from is no answer yet (market.hold): S is caps, which only users move
    params = COORDINATOR
    measured = g(floor_supply(supply, demand, params.supply_floor), demand)
    new_p, new_state = update(p, supply, demand, state, rule=settings.rule, params=params)
    bounded = prices(*(min(max(x, PRICE_BOUNDS[0]), PRICE_BOUNDS[1])
                       for x in (new_p.upload, new_p.download)))
    note = held_reason(new_state, params) or ("" if bounded == new_p else "price held at its bound")
    return await _record(coord, t, bounded, overheads_at(bounded), new_state, measured,
                         supply, demand, note)


async def _record(coord: Coordinator, t: int, p: Resources, o: Overheads,
                  state: UpdateState | None, measured: tuple[float, float] | None,
                  supply: Resources | None, demand: Resources | None, note: str) -> PriceRow:
    state = state or new_state(coord.market.rule)
    row = PriceRow(at=t, rule=state.rule, p_upload=p.upload, p_download=p.download,
                   prices=rules.PriceTable.from_prices(p, o).to_dict(), g=measured,
                   supply=None if supply is None else supply.to_dict(),
                   demand=None if demand is None else demand.to_dict(),
                   state=state.to_dict(), note=note, overheads=o.to_dict())
    row_id = await bank.add_price(coord.db, row)
    return PriceRow(**{**row.__dict__, "id": row_id})


# -- supply quote (§3.1) ------------------------------------------------------------------

async def user_mix(coord: Coordinator, user: str) -> tuple[Services, bool]:
    """The user's own B:S:R mix over the last MIX_WINDOW, else the default (flag False)."""
    t = int(time.time())
    used = await bank.usage_since(coord.db, t - MIX_WINDOW, user)
    first = await bank.first_use(coord.db, user)
    seconds = min(MIX_WINDOW, t - first) if first is not None else 0
    mix = mix_from_usage(used.get("backup", 0), used.get("storage", 0),
                         used.get("retrieval", 0), seconds)
    return (mix, True) if mix is not None else (DEFAULT_MIX, False)


async def supply_quote(coord: Coordinator, user: str, machine_id: str, space: int | None,
                       upload: int | None, download: int | None) -> dict[str, Any]:
    """Backup space in use and available under these caps, and each cap's effective
    region (the value beyond which raising it buys nothing), at today's prices."""
    p, table = await current_prices(coord)
    last = await bank.latest_price(coord.db)
    overheads = await current_overheads(coord)
    demand = Resources.from_dict(last.demand) if last is not None and last.demand else \
        default_demand(overheads)
    peer = await coordinator_peers.get(coord.db, machine_id)
    avail = placement.availability(peer) if peer is not None else PRIOR_AVAILABILITY
    disk = peer.stored_bytes + peer.free_bytes if peer is not None else 0
    counted = market_caps(space, upload, download, disk)  # space 0: bandwidth alone
    caps = supply_from_caps(*counted[:3], avail, counted[3])
    mix, own = await user_mix(coord, user)
    _, backed_up = await coordinator_packs.totals(coord.db, user)
    # the same pure function the settings page prices each slider move with (§3.1)
    snap = Snapshot(p, overheads, demand, mix, avail, counted[3], backed_up, DEFAULT_SLACK)
    bal = balance(snap, *counted[:3])
    market = backup_balance(caps, p, overheads, snap.limits, backed_up / GB, mix)
    return {
        "caps": {"space": space, "upload": upload, "download": download},
        "in_use_bytes": backed_up, "total_bytes": bal.total_bytes,
        "available_bytes": bal.available_bytes, "regions": bal.regions,
        "availability": avail, "peer_known": peer is not None,
        "mix": mix.to_dict(), "own_mix": own,
        "market": {"supply": caps.to_dict(), "effective": market.effective.to_dict(),
                   "regions": market.regions.to_dict(), "demand": demand.to_dict(),
                   "slack": snap.slack, "overheads": overheads.to_dict(),
                   "disk_bytes": disk},
        "prices": {"p": p.to_dict(), "micro": table.to_dict()},
    }
