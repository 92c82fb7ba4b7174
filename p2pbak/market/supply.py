"""What a supply vector buys (§2.5 flow constraint, §3.1 sliders, eq. 2 and 4)."""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.market.prices import USABLE_FRACTION, Overheads, effective_space, service_prices
from p2pbak.market.resources import Resources, Services
from p2pbak.units import DAY, GB

# The slack factor of eq. (4) (§3.3: "how flexible the system's work allocation method
# is"): how far one user's mix may stray from the aggregate demand's. Work allocation can
# steer retrievals and repairs toward other holders only so far, so it is kept small: at
# 1.5 the paper's own example holds (§3.1: at 5 KB/s of upload, space beyond ~49 GB
# buys nothing, so raising it from 50 GB to 100 GB leaves backup space unchanged).
DEFAULT_SLACK = 1.5
# A typical usage pattern B:S:R per GB stored: 1% of it re-sent per day, 0.2% retrieved.
DEFAULT_MIX = Services(backup=0.01, storage=1.0, retrieval=0.002)


@dataclass(frozen=True)
class RatioLimits:
    """Eq. (4): S_X ≤ r_XY·S_Y for X ≠ Y; r[X][Y] indexed in (space, upload, download) order."""

    r: tuple[tuple[float, float, float], ...]

    @classmethod
    def from_demand(cls, demand: Resources, slack: float = DEFAULT_SLACK) -> RatioLimits:
        """r_XY = slack·d_X/d_Y: aggregate demand ratios widened by the slack factor (§3.3)."""
        d = demand.as_tuple()
        if slack < 1 or min(d) <= 0:
            raise ValueError("slack must be >= 1 and every aggregate demand positive")
        return cls(tuple(tuple(1.0 if x == y else slack * d[x] / d[y] for y in range(3))
                         for x in range(3)))

    def allows(self, s: Resources, rel_tol: float = 1e-9) -> bool:
        v = s.as_tuple()
        return all(v[x] <= self.r[x][y] * v[y] * (1 + rel_tol) + 1e-12
                   for x in range(3) for y in range(3) if x != y)


def effective_supply(caps: Resources, limits: RatioLimits) -> Resources:
    """The largest supply ≤ caps that meets eq. (4): what the caps are actually worth."""
    v = list(caps.as_tuple())
    for _ in range(3):  # monotone decreasing; a fixed point within 3 passes
        new = [min(v[x], *(limits.r[x][y] * v[y] for y in range(3) if y != x))
               for x in range(3)]
        if new == v:
            break
        v = new
    return Resources(*v)


def chained_limits(limits: RatioLimits) -> tuple[tuple[float, float, float], ...]:
    """The tightest bound on S_X/S_Y through any chain of eq. (4)'s constraints:
    min(r_XY, r_XZ·r_ZY). One pass of min(v_X, R_XY·v_Y) with these is the point
    `effective_supply` reaches in passes (a cycle's r_XY·r_YX = slack² ≥ 1 bounds nothing)."""
    r = limits.r
    return tuple(tuple(1.0 if x == y else min(r[x][y], *(r[x][z] * r[z][y] for z in range(3)
                                                         if z not in (x, y)))
                       for y in range(3)) for x in range(3))


def slider_regions(caps: Resources, limits: RatioLimits) -> Resources:
    """§3.1 "effective slider region": per resource, the cap beyond which raising it buys
    nothing (min over the others of r_XY·cap_Y). Raising one cap widens the others'."""
    v = caps.as_tuple()
    return Resources(*(min(limits.r[x][y] * v[y] for y in range(3) if y != x)
                       for x in range(3)))


def max_services(supply: Resources, p: Resources, o: Overheads, mix: Services) -> Services:
    """Eq. (2): D_i = t·mix with D_i·q = S_i·p (perfect complements in the user's mix)."""
    cost = mix.dot(service_prices(p, o))
    if cost <= 0:
        raise ValueError("the usage mix must have a positive cost")
    return mix.scale(supply.dot(p) / cost)


def max_backup_space(supply: Resources, p: Resources, o: Overheads,
                     mix: Services = DEFAULT_MIX) -> float:
    """D_iS in GB: the backup space a supply vector pays for at prices p."""
    if mix.storage <= 0:
        raise ValueError("the usage mix must include storage")
    return max_services(supply, p, o, mix).storage


def affords(supply: Resources, demand: Services, p: Resources, o: Overheads) -> bool:
    """Eq. (3): d_i·q ≤ S_i·p."""
    return demand.dot(service_prices(p, o)) <= supply.dot(p) * (1 + 1e-12)


def caps_to_supply(space_bytes: int, upload_bytes_per_s: float, download_bytes_per_s: float,
                   availability: float, usable: float = USABLE_FRACTION) -> Resources:
    """Slider caps → a maximum supply vector in market units (§2.5: effective space;
    bandwidth in GB per day while online)."""
    online = DAY * availability / GB
    return Resources(effective_space(space_bytes / GB, availability, usable),
                     upload_bytes_per_s * online, download_bytes_per_s * online)


@dataclass(frozen=True)
class BackupBalance:
    """§3.1 "resource balance": backup space in use and what more the caps allow (GB)."""

    in_use: float
    total: float
    available: float
    effective: Resources  # the caps after eq. (4)
    regions: Resources  # effective slider regions, market units

    def to_dict(self) -> dict[str, object]:
        return {"in_use_gb": self.in_use, "total_gb": self.total,
                "available_gb": self.available, "effective": self.effective.to_dict(),
                "regions": self.regions.to_dict()}


def backup_balance(caps: Resources, p: Resources, o: Overheads, limits: RatioLimits,
                   in_use_gb: float, mix: Services = DEFAULT_MIX) -> BackupBalance:
    """Current use and additional backup space available under the caps (§3.1)."""
    eff = effective_supply(caps, limits)
    total = max_backup_space(eff, p, o, mix)
    return BackupBalance(in_use_gb, total, max(0.0, total - in_use_gb), eff,
                         slider_regions(caps, limits))
