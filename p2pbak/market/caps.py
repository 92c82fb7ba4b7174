"""Slider caps (§3.1) ↔ market units (§2.5), and a user's own B:S:R mix from usage.

Caps are what a user types: space in bytes, upload and download in bytes/s, 0 = no cap.
The market counts per day: effective GB of space (space × availability × 2/3), GB moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2pbak.market.prices import USABLE_FRACTION
from p2pbak.market.resources import Resources, Services
from p2pbak.market.supply import caps_to_supply
from p2pbak.units import DAY, GB

UNCAPPED_RATE = 1_000_000  # bytes/s a bandwidth cap of 0 (no cap) is counted as


def supply_from_caps(space: int, upload: int, download: int, availability: float,
                     disk_space: int = 0, usable: float = USABLE_FRACTION) -> Resources:
    """Maximum supply S_i of a machine (§2.5): an unset space cap counts as the disk space
    the agent reports, an unset rate as UNCAPPED_RATE. Numbers, or numpy columns of many
    machines (then each field of the result is a column)."""
    return caps_to_supply(_or(space, disk_space), _or(upload, UNCAPPED_RATE),
                          _or(download, UNCAPPED_RATE), availability, usable)


def _or(value: Any, default: Any) -> Any:
    """`value or default`, element by element for an array."""
    if isinstance(value, np.ndarray):
        return np.where(value > 0, value, default)
    return value or default


def caps_from_supply(supply: Resources, availability: float,
                     usable: float = USABLE_FRACTION) -> tuple[int, int, int]:
    """The inverse of caps_to_supply: (space bytes, upload B/s, download B/s), rounded down."""
    if not 0 < availability <= 1:
        raise ValueError("availability must be in (0, 1]")
    online = DAY * availability
    space = supply.space / (availability * usable) * GB
    return int(space), int(supply.upload * GB / online), int(supply.download * GB / online)


def mix_from_usage(backup_bytes: int, storage_byte_seconds: int, retrieval_bytes: int,
                   seconds: int) -> Services | None:
    """A user's service mix d_i per day (§2.5) from what the ledger booked over `seconds`;
    None when the user stored nothing (no mix to speak of)."""
    if seconds <= 0 or storage_byte_seconds <= 0:
        return None
    days = seconds / DAY
    return Services(backup=backup_bytes / GB / days,
                    storage=storage_byte_seconds / GB / seconds,
                    retrieval=retrieval_bytes / GB / days)
