"""Units every layer shares: time in seconds, sizes in bytes, money in micro-credits."""

from __future__ import annotations

HOUR = 3_600
DAY = 86_400  # seconds

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
GB = 1_000_000_000  # decimal: caps and prices are quoted per GB, as disks are sold

MICRO = 1_000_000  # µc per credit: the ledger counts integer micro-credits
