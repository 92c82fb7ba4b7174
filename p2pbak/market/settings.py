"""The settings window's numbers (§3.1, Fig. 1), in the user's units, from one snapshot.

A snapshot is what the coordinator last published for this machine (prices p, the overheads
behind q, the aggregate demand d and the slack factor of eq. 4, the machine's availability
and disk, the user's own mix and backup in use). From it, any slider position is priced
locally: the resource balance (flow constraint eq. 2, S_i·p = D_i·q, within the ratio
constraints eq. 4) and each slider's effective region, the interval [0, high] of caps in
which moving that slider changes backup space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from p2pbak.market.caps import UNCAPPED_RATE, caps_from_supply, supply_from_caps
from p2pbak.market.equilibrium import aggregate_demand
from p2pbak.market.prices import Overheads
from p2pbak.market.resources import Resources, Services, prices
from p2pbak.market.supply import DEFAULT_MIX, DEFAULT_SLACK, RatioLimits, backup_balance
from p2pbak.units import GB

NAMES = ("space", "upload", "download")


@dataclass(frozen=True)
class Snapshot:
    """What a slider position is priced with; no I/O behind it."""

    p: Resources
    overheads: Overheads
    demand: Resources
    mix: Services
    availability: float
    disk_bytes: int = 0
    in_use_bytes: int = 0
    slack: float = DEFAULT_SLACK

    @property
    def limits(self) -> RatioLimits:
        return RatioLimits.from_demand(self.demand, self.slack)

    @classmethod
    def from_quote(cls, q: Mapping[str, Any]) -> Snapshot:
        """From the coordinator's supply quote (POST /v1/supply/quote)."""
        m = q["market"]
        mix = q["mix"]
        return cls(p=Resources.from_dict(q["prices"]["p"]),
                   overheads=Overheads.from_dict(m.get("overheads", {})),
                   demand=Resources.from_dict(m["demand"]),
                   mix=Services(float(mix["backup"]), float(mix["storage"]),
                                float(mix["retrieval"])),
                   availability=float(q["availability"]),
                   disk_bytes=int(m.get("disk_bytes", 0)),
                   in_use_bytes=int(q["in_use_bytes"]),
                   slack=float(m.get("slack", DEFAULT_SLACK)))


def prior_snapshot(availability: float = 0.5, slack: float = DEFAULT_SLACK) -> Snapshot:
    """Before any market was measured: p = (1, 1, 1), the default overheads, and the
    demand of one user of the default mix (what a new coordinator publishes)."""
    o = Overheads()
    return Snapshot(prices(1.0, 1.0), o, aggregate_demand([DEFAULT_MIX], o), DEFAULT_MIX,
                    availability, slack=slack)


@dataclass(frozen=True)
class Balance:
    """§3.1 resource balance and effective regions for one slider position (bytes, B/s)."""

    in_use_bytes: int
    total_bytes: int
    available_bytes: int
    regions: dict[str, int]  # per slider: the cap beyond which it buys nothing
    effective: dict[str, int]  # the caps after eq. (4), in the same units
    counted: dict[str, int]  # the caps as counted: "no cap" is the disk, UNCAPPED_RATE

    def to_dict(self) -> dict[str, Any]:
        return {"in_use_bytes": self.in_use_bytes, "total_bytes": self.total_bytes,
                "available_bytes": self.available_bytes, "regions": self.regions,
                "effective": self.effective, "counted": self.counted}


def balance(snap: Snapshot, space: int, upload: int, download: int) -> Balance:
    """The pie and the thick lines for caps (space bytes, upload/download B/s; 0 = no cap)."""
    caps = supply_from_caps(space, upload, download, snap.availability, snap.disk_bytes)
    bal = backup_balance(caps, snap.p, snap.overheads, snap.limits,
                         snap.in_use_bytes / GB, snap.mix)
    regions = caps_from_supply(bal.regions, snap.availability)
    effective = caps_from_supply(bal.effective, snap.availability)
    counted = (space or snap.disk_bytes, upload or UNCAPPED_RATE, download or UNCAPPED_RATE)
    total = int(bal.total * GB)
    return Balance(snap.in_use_bytes, total, max(0, total - snap.in_use_bytes),
                   dict(zip(NAMES, regions, strict=True)),
                   dict(zip(NAMES, effective, strict=True)),
                   dict(zip(NAMES, counted, strict=True)))


def paper_example(snap: Snapshot, upload: int = 5_000,
                  spaces: tuple[int, int] = (50 * GB, 100 * GB)) -> tuple[Balance, Balance]:
    """§3.1's example: at 5 KB/s of upload, space raised from 50 GB to 100 GB."""
    return (balance(snap, spaces[0], upload, 0), balance(snap, spaces[1], upload, 0))
