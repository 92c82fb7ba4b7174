"""The market's records the market routes read and change: price history, supply caps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pbak.store.db import bank
from p2pbak.store.db.bank import PriceRow

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

__all__ = ["PriceRow", "price_history", "set_supply_caps"]


async def price_history(coord: Coordinator, limit: int) -> list[PriceRow]:
    return await bank.price_history(coord.db, limit)


async def set_supply_caps(coord: Coordinator, peer_id: str, space: int | None,
                          upload: int | None, download: int | None) -> bool:
    """New caps for the peer; False if this machine has no peer."""
    return await bank.set_peer_caps(coord.db, peer_id, space, upload, download)
