"""Today's prices: p and the price table (µc) every operation is billed at (§3.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pbak.market import bank as rules
from p2pbak.market.prices import Overheads
from p2pbak.market.resources import Resources, prices
from p2pbak.store.db import bank

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

INITIAL_PRICES = prices(1.0, 1.0)  # p = (1, p_U, p_D) before the first price update
OVERHEADS = Overheads()  # the prior, until the price job has measured the real ones


async def current_prices(coord: Coordinator) -> tuple[Resources, rules.PriceTable]:
    """Today's p and its price table (µc): the last history row, else the initial prices."""
    row = await bank.latest_price(coord.db)
    if row is None:
        return INITIAL_PRICES, rules.PriceTable.from_prices(INITIAL_PRICES, OVERHEADS)
    return prices(row.p_upload, row.p_download), rules.PriceTable.from_dict(row.prices)


async def current_overheads(coord: Coordinator) -> Overheads:
    """The overheads today's q came from: the last history row's, else the prior."""
    row = await bank.latest_price(coord.db)
    if row is None or row.overheads is None:
        return OVERHEADS
    return Overheads.from_dict(row.overheads)
