"""The coordinator's settings: what `p2pbak serve`'s options configure."""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.units import DAY


@dataclass(frozen=True)
class MarketSettings:
    """`serve` options of the market."""

    price_interval: float = float(DAY)
    billing_interval: float = 3600.0
    max_deficit: int | None = None  # µc for every account; None: market.bank.max_deficit
    rule: str = "safe"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""


@dataclass(frozen=True)
class RepairSettings:
    """`p2pbak serve` options of the repair machinery."""

    checker_interval: float = 300.0
    departure_timeout: int = 72 * 3600
    audit_interval: float = 300.0
    availability_window: int = 7 * DAY
