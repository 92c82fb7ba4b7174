"""Service prices q from resource prices p (§3.3: "p automatically determines q").

Each service needs a fixed bundle of supplier resources, so the map is linear: a matrix
A with  resources_needed = A·d  and  q = Aᵀ·p, hence d·q = p·(A·d) exactly (the bank
pays out what it charges when the work matches the overheads). Per unit of service:

* backup 1 GB      → suppliers download `factor` GB (the n/k fragments, Table 1 op. 1), or
                     `backup_factor` when the codes of new packs differ from the stock's
* storage 1 GB-day → `factor` GB held on peers online `holder_availability` of the time,
                     i.e. factor·a·usable effective GB-days (§2.5), plus the repair load
                     (`repair` GB of upload and of download per GB-day, Table 1 op. 4)
* retrieval 1 GB   → suppliers upload `fetch` GB (any k of n fragments; >1 when a few
                     extra are asked for, Table 1 op. 3)

With factor ≈ 3 (§2.2, a = 0.5) a 12 h/day user pays about 3× per GB stored what one
GB of their own disk earns: q_S / (p_S·a·usable) = factor·a_h/a ≈ 3.

§3.3 asks for "the overhead resulting from the erasure coding and the amount of repair and
testing operations the system needs to perform": `measured_overheads` reads them from what
the coordinator holds and pays, so that q charges what the bank pays out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

from p2pbak.market.resources import Resources, Services
from p2pbak.units import DAY, GB

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
    backup_factor: float | None = None  # n/k of the packs being backed up; None: `factor`

    def __post_init__(self) -> None:
        if not (self.factor >= 1 and 0 < self.holder_availability <= 1 and 0 < self.usable <= 1
                and self.fetch >= 1 and self.repair >= 0 and self.download_per_gb >= 1):
            raise ValueError(f"invalid overheads {self}")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, float | None]) -> Overheads:
        """The fields `data` has (as in a price history row); the defaults for the rest."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: None if v is None else float(v) for k, v in data.items()
                      if k in known})

    @property
    def download_per_gb(self) -> float:
        """GB suppliers download per GB backed up (Table 1 op. 1)."""
        return self.factor if self.backup_factor is None else self.backup_factor

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
        download=o.download_per_gb * d.backup + o.repair * d.storage,
    )


def service_prices(p: Resources, o: Overheads) -> Services:
    """q = Aᵀ·p (§3.3), so that d·q = p·(A·d) for every d."""
    return Services(
        backup=o.download_per_gb * p.download,
        storage=o.space_per_gb * p.space + o.repair * (p.upload + p.download),
        retrieval=o.fetch * p.upload,
    )


def consume_to_earn_ratio(p: Resources, o: Overheads, availability: float) -> float:
    """What a GB stored costs per day over what a GB of own disk earns per day (§2.2)."""
    earn = p.space * effective_space(1.0, availability, o.usable)
    return service_prices(p, o).storage / earn


@dataclass(frozen=True)
class Flows:
    """What the ledger booked over the last `seconds` (the interval being priced)."""

    backed_up: int = 0  # data bytes charged q_B
    backup_stored: int = 0  # fragment bytes of those backups the bank paid p_D for
    upkeep_paid: int = 0  # µc the bank paid for repair and testing (and work moves)
    stored_byte_seconds: int = 0  # data charged q_S: 0 while no storage was billed
    seconds: int = 0

    def __post_init__(self) -> None:
        if min(self.backed_up, self.backup_stored, self.upkeep_paid, self.stored_byte_seconds,
               self.seconds) < 0:
            raise ValueError(f"negative flows {self}")


def measured_overheads(pack_bytes: int, held: Iterable[tuple[int, float]],
                       flows: Flows = Flows(), bandwidth_micro: float = 0.0,
                       prior: Overheads = Overheads()) -> Overheads:
    """The overheads that actually occur (§2.2 erasure factor, §3.3 repair and testing).

    `pack_bytes`: Σ length of the packs stored; `held`: (fragment bytes, availability) of
    each holder; `flows`: what the ledger booked lately; `bandwidth_micro`: p_U + p_D in
    µc per GB at the prices q will be charged at. Then q_S pays the holders
    Σ bytes·a·usable·p_S plus what upkeep cost per day, shared over the GB stored, and
    q_B pays the store receipts of new packs: the bank nets 0 while the work and what is
    stored stay as measured. Each quantity without data to measure it (nothing held; no
    backups, or no storage billed over `flows`) is the prior's; the backup factor without
    backups is the storage one. Not smoothed against earlier rows: a smoothed repair load
    charges each payment back over many intervals, and the bank carries the difference.
    """

    if pack_bytes < 0 or bandwidth_micro < 0:
        raise ValueError("pack bytes and prices must be non-negative")
    fragment_bytes = weighted = 0.0
    for size, availability in held:
        if size < 0 or not 0 <= availability <= 1:
            raise ValueError(f"holder of {size} bytes at availability {availability}")
        fragment_bytes += size
        weighted += size * availability
    factor, a = prior.factor, prior.holder_availability
    if pack_bytes > 0 and fragment_bytes > 0:
        # fewer fragment bytes than data (holders gone) still needs the code's factor ≥ 1
        factor = max(1.0, fragment_bytes / pack_bytes)
        measured = weighted / fragment_bytes
        if measured > 0:  # a vanishing availability underflows to 0: the prior's then
            a = min(1.0, measured)
    backup = None
    if flows.backed_up > 0 and flows.backup_stored > 0:
        backup = max(1.0, flows.backup_stored / flows.backed_up)
    repair = prior.repair
    if pack_bytes > 0 and flows.stored_byte_seconds > 0 and flows.seconds > 0 \
            and bandwidth_micro > 0:
        # µc paid per day per GB stored now, as GB of each bandwidth at the prices to come:
        # q_S then funds what upkeep cost even when prices moved since (no split by
        # direction needed), each payment charged back once over as long again
        per_day = flows.upkeep_paid * DAY / flows.seconds
        repair = per_day / bandwidth_micro / (pack_bytes / GB)
    # fetch is 1: a retrieval receipt charges the owner for the very bytes it pays for
    return Overheads(factor=factor, holder_availability=a, usable=prior.usable, fetch=1.0,
                     repair=repair, backup_factor=backup)


def repair_reserve(measured: Overheads, prior: Overheads) -> Overheads:
    """The overheads the price update reads demand through (§4: the market must keep excess
    supply for new requests): upkeep at the expected repair load (the prior), whatever was
    paid this interval. Bandwidth for repair must be there on the day peers fail even if
    none failed; and what the bank paid includes work allocation's moves, which are the
    bank's own balancing, not users' demand, and come in bursts prices must not chase.
    Charges (q) keep the measured load, so the bank still nets out."""
    return replace(measured, repair=prior.repair)
