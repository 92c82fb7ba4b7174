"""Service prices q from resource prices p (§3.3: "p automatically determines q").

Each service needs a fixed bundle of supplier resources, so the map is linear: a matrix
A with  resources_needed = A·d  and  q = Aᵀ·p, hence d·q = p·(A·d) exactly (the bank
pays out what it charges when the work matches the overheads). Per unit of service:

* backup 1 GB      → suppliers download `factor` GB (the n/k fragments, Table 1 op. 1)
* storage 1 GB-day → `factor` GB held on peers online `holder_availability` of the time,
                     i.e. factor·a·usable effective GB-days (§2.5), plus the repair load
                     (`repair` GB of upload and of download per GB-day, Table 1 op. 4)
* retrieval 1 GB   → suppliers upload `fetch` GB (any k of n fragments; >1 when a few
                     extra are asked for, Table 1 op. 3)

With factor ≈ 3 (§2.2, a = 0.5) a 12 h/day user pays about 3× per GB stored what one
GB of their own disk earns: q_S / (p_S·a·usable) = factor·a_h/a ≈ 3.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.market.resources import Resources, Services

USABLE_FRACTION = 2.0 / 3.0  # §2.5: "an overhead factor (of approx. 2/3 in practice)"
DEFAULT_FACTOR = 3.0  # §2.2: erasure replication factor n/k at 12 h/day availability
DEFAULT_AVAILABILITY = 0.5  # §2.2: 12 h/day


@dataclass(frozen=True)
class Overheads:
    """What one unit of each service costs the suppliers, in resources."""

    factor: float = DEFAULT_FACTOR  # n/k of the erasure code in use
    holder_availability: float = DEFAULT_AVAILABILITY
    usable: float = USABLE_FRACTION
    fetch: float = 1.0  # GB uploaded by suppliers per GB retrieved
    repair: float = 0.018  # GB of upload and of download per GB-day stored

    def __post_init__(self) -> None:
        if not (self.factor >= 1 and 0 < self.holder_availability <= 1 and 0 < self.usable <= 1
                and self.fetch >= 1 and self.repair >= 0):
            raise ValueError(f"invalid overheads {self}")

    @property
    def space_per_gb(self) -> float:
        """Effective GB-days of supplier space one stored GB-day uses (§2.5)."""
        return self.factor * self.holder_availability * self.usable


def repair_load(loss_rate: float, factor: float, margin: float) -> float:
    """GB of each bandwidth per GB-day stored that repair costs (Table 1 op. 4).

    `loss_rate`: share of fragments lost for good per day; `margin`: (n - repair)/k, the
    data-GB of fragments rebuilt per repair. A repair fetches k fragments (1 GB: holders
    upload, repairer downloads) and stores `margin` GB anew (repairer uploads, new holders
    download); it happens loss_rate·factor/margin times per GB-day.
    """
    if loss_rate < 0 or factor < 1 or margin <= 0:
        raise ValueError("loss_rate >= 0, factor >= 1 and margin > 0 are required")
    return loss_rate * factor * (1.0 + margin) / margin


def effective_space(space_gb: float, availability: float,
                    usable: float = USABLE_FRACTION) -> float:
    """§2.5: effective space supply = space × availability × usable (30·0.5·2/3 = 10 GB)."""
    return space_gb * availability * usable


def resources_needed(d: Services, o: Overheads) -> Resources:
    """A·d: the supplier resources a service bundle consumes (Table 1)."""
    return Resources(
        space=o.space_per_gb * d.storage,
        upload=o.fetch * d.retrieval + o.repair * d.storage,
        download=o.factor * d.backup + o.repair * d.storage,
    )


def service_prices(p: Resources, o: Overheads) -> Services:
    """q = Aᵀ·p (§3.3), so that d·q = p·(A·d) for every d."""
    return Services(
        backup=o.factor * p.download,
        storage=o.space_per_gb * p.space + o.repair * (p.upload + p.download),
        retrieval=o.fetch * p.upload,
    )


def consume_to_earn_ratio(p: Resources, o: Overheads, availability: float) -> float:
    """What a GB stored costs per day over what a GB of own disk earns per day (§2.2)."""
    earn = p.space * effective_space(1.0, availability, o.usable)
    return service_prices(p, o).storage / earn
