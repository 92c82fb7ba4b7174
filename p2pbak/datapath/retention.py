"""Which snapshots a keep policy keeps: restic's `forget --keep-*` rules, pure.

Snapshots are taken newest first. `keep-last N` keeps the N newest. Each bucket rule
(`hourly`, `daily`, `weekly` (ISO week), `monthly`, `yearly`) keeps the newest snapshot of
each of the N most recent periods that have one. A snapshot kept by any rule is kept (the
rules are a union), and every reason is reported. N = -1 means no limit. Snapshots are
grouped (by host and paths, as restic's default `--group-by host,paths`) and the policy
applies to each group on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Generic, TypeVar

T = TypeVar("T")
UNLIMITED = -1

# rule name → bucket of a (local) time; two snapshots in one bucket share a period
_BUCKETS: dict[str, Callable[[datetime], Hashable]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        for name, value in self.counts().items():
            if value < UNLIMITED:
                raise ValueError(f"--keep-{name} must be -1 (no limit) or more, not {value}")

    def counts(self) -> dict[str, int]:
        return asdict(self)

    def empty(self) -> bool:
        return all(v == 0 for v in self.counts().values())


@dataclass
class Decision(Generic[T]):
    keep: list[T] = field(default_factory=list)  # newest first
    remove: list[T] = field(default_factory=list)  # newest first
    reasons: dict[int, list[str]] = field(default_factory=dict)  # id(kept item) → rules


def apply_policy(items: Sequence[T], policy: Policy, time_of: Callable[[T], datetime],
                 tz: tzinfo | None = None) -> Decision[T]:
    """Split one group of snapshots into kept and removed (restic's order and rules).

    Times are bucketed in `tz` (default: the local zone, as restic does).
    """
    ordered = sorted(items, key=time_of, reverse=True)
    left = policy.counts()
    last_bucket: dict[str, Hashable] = {}
    out: Decision[T] = Decision()
    for item in ordered:
        when = time_of(item).astimezone(tz)
        reasons = []
        if left["last"] != 0:
            reasons.append("last snapshot")
            left["last"] -= 1
        for rule, bucket_of in _BUCKETS.items():
            bucket = bucket_of(when)
            if left[rule] != 0 and last_bucket.get(rule, _NONE) != bucket:
                reasons.append(f"{rule} snapshot")
                last_bucket[rule] = bucket
                left[rule] -= 1
        if reasons:
            out.keep.append(item)
            out.reasons[id(item)] = reasons
        else:
            out.remove.append(item)
    return out


_NONE = object()


def group_by(items: Sequence[T], key: Callable[[T], Hashable]) -> dict[Hashable, list[T]]:
    """Items grouped by `key`, groups in order of first appearance."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
