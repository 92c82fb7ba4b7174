"""Bank rules (§2.4, Table 1): who pays whom for an operation, in integer micro-credits.

The ledger itself lives in the coordinator's database; these functions only say which
postings an operation makes. Every amount is an int (1 credit = 1_000_000 µc) and every
operation's postings sum to exactly 0:

* the consumer is charged the service price, rounded UP to the µc;
* each supplier is paid the resource price for its own work, rounded DOWN;
* the bank takes the remainder (negative when the actual work cost more than the
  service price covers, e.g. more fragments than the average factor).

Repair and testing are system upkeep: the bank pays the suppliers, funded by the repair
share that the storage price q_S includes (prices.Overheads.repair), so pack owners are
not charged twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

from p2pbak.market.prices import USABLE_FRACTION, Overheads, service_prices
from p2pbak.market.resources import Resources
from p2pbak.units import DAY, GB, MICRO

PPM = 1_000_000  # availability and usable fraction are exact to 1 ppm
BANK = "bank"


def to_micro(credits: float) -> int:
    """A price in credits as integer µc (nearest)."""
    return round(credits * MICRO)


@dataclass(frozen=True)
class PriceTable:
    """Today's prices in µc: per effective GB-day (space, storage) or per GB (the rest)."""

    space: int
    upload: int
    download: int
    backup: int
    storage: int
    retrieval: int

    @classmethod
    def from_prices(cls, p: Resources, o: Overheads) -> PriceTable:
        q = service_prices(p, o)
        return cls(to_micro(p.space), to_micro(p.upload), to_micro(p.download),
                   to_micro(q.backup), to_micro(q.storage), to_micro(q.retrieval))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> PriceTable:
        return cls(**{k: int(data[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Posting:
    """One ledger row: `amount` µc credited (>0) or debited (<0) to `account`."""

    account: str
    amount: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _settle(payer: str, charge: int | None, paid: Iterable[tuple[str, int]]) -> list[Posting]:
    """Merge per account; the payer pays `charge` (or exactly what was paid out), the bank
    takes the remainder. Sum is 0 by construction."""
    rows: dict[str, int] = {}
    for account, amount in paid:
        rows[account] = rows.get(account, 0) + amount
    out = sum(rows.values())
    total = out if charge is None else charge
    rows[payer] = rows.get(payer, 0) - total
    rows[BANK] = rows.get(BANK, 0) + (total - out)
    return [Posting(a, v) for a, v in rows.items() if v != 0]


def backup_postings(consumer: str, data_bytes: int, fragments: Sequence[tuple[str, int]],
                    table: PriceTable) -> list[Posting]:
    """Op. 1: consumer pays q_B per GB backed up; each supplier p_D per GB it downloaded."""
    charge = _ceil_div(table.backup * data_bytes, GB)
    return _settle(consumer, charge, ((peer, table.download * size // GB)
                                      for peer, size in fragments))


def storage_postings(consumer: str, data_bytes: int, seconds: int,
                     holders: Sequence[tuple[str, int, float]], table: PriceTable,
                     usable: float = USABLE_FRACTION) -> list[Posting]:
    """Op. 2: consumer pays q_S per GB-day of own data; each holder (peer, fragment bytes,
    availability) is paid p_S per *effective* GB-day: bytes × availability × usable (§2.5)."""
    charge = storage_charge(data_bytes, seconds, table)
    return _settle(consumer, charge, ((peer, storage_pay(size, seconds, a, table, usable))
                                      for peer, size, a in holders))


def storage_charge(data_bytes: int, seconds: int, table: PriceTable) -> int:
    """Op. 2, consumer side: q_S per GB-day of own data, rounded up to the µc."""
    return _ceil_div(table.storage * data_bytes * seconds, GB * DAY)


def storage_pay(size: int, seconds: int, availability: float, table: PriceTable,
                usable: float = USABLE_FRACTION) -> int:
    """Op. 2, holder side: p_S per effective GB-day (size × availability × usable),
    rounded down to the µc."""
    num, den = _effective(availability, usable)
    return table.space * size * seconds * num // (GB * DAY * den)


@lru_cache(maxsize=1 << 20)
def _effective(availability: float, usable: float) -> tuple[int, int]:
    """availability × usable as an exact fraction, each factor exact to 1 ppm (cached:
    a storage run meets each peer's availability once per (owner, peer) pair)."""
    eff = Fraction(availability).limit_denominator(PPM) * \
        Fraction(usable).limit_denominator(PPM)
    return eff.numerator, eff.denominator


def retrieval_postings(consumer: str, data_bytes: int, uploads: Sequence[tuple[str, int]],
                       table: PriceTable) -> list[Posting]:
    """Op. 3: consumer pays q_R per GB restored; each supplier p_U per GB it uploaded."""
    charge = _ceil_div(table.retrieval * data_bytes, GB)
    return _settle(consumer, charge, ((peer, table.upload * size // GB)
                                      for peer, size in uploads))


def upkeep_postings(transfers: Sequence[tuple[str, int, int]], table: PriceTable,
                    payer: str = BANK) -> list[Posting]:
    """Ops. 4-5 (repair, testing): each peer (peer, uploaded bytes, downloaded bytes) is
    paid for both bandwidths; the bank pays unless another payer is named."""
    return _settle(payer, None, ((peer, (table.upload * up + table.download * down) // GB)
                                 for peer, up, down in transfers))


def relay_postings(relay: str, carried: int, table: PriceTable) -> list[Posting]:
    """Relaying (our extension of Table 1): a relay downloads each byte it carries and
    uploads it again, so it is paid p_U + p_D per GB carried. The bank pays, as upkeep:
    the measured overheads charge it back through q_S (docs/market.md)."""
    return upkeep_postings([(relay, carried, carried)], table)


# --- deficits and alerts (§2.4, §3.1 "Handling Low Account Balances") ---

GRACE_DAYS = 14  # how long a user may stay offline paying for storage before freezing
MIN_DEFICIT = 10 * MICRO
ALERT_SHARE = (3, 4)  # alert once 3/4 of the maximum deficit is used


def max_deficit(daily_charge: int, grace_days: int = GRACE_DAYS,
                minimum: int = MIN_DEFICIT) -> int:
    """Largest debt (µc, positive) allowed: `grace_days` of the user's daily storage bill,
    at least `minimum` so a new user can make a first backup."""
    if daily_charge < 0 or grace_days < 0 or minimum < 0:
        raise ValueError("daily charge, grace days and minimum must be non-negative")
    return max(minimum, daily_charge * grace_days)


def deficit_limit(daily_charge: int, supplied: bool, first_allowance: int) -> int:
    """Issue 14: an account that has not yet been paid for proven work may not go deeper
    than `first_allowance` (what its online peer's counted supply earns in a day, 0 with
    no peer), so a Sybil account gets nothing for free; once it has supplied, the paper's
    max_deficit rule applies."""
    if first_allowance < 0:
        raise ValueError("the first allowance must be non-negative")
    return max_deficit(daily_charge) if supplied else first_allowance


def is_frozen(balance: int, deficit_limit: int) -> bool:
    """No new backups once the balance reaches −max_deficit (restores are never blocked)."""
    return balance <= -deficit_limit


def alert_threshold(deficit_limit: int) -> int:
    """The balance (µc, ≤ 0) at or below which the user is warned."""
    num, den = ALERT_SHARE
    return -(deficit_limit * num // den)


def is_low(balance: int, deficit_limit: int) -> bool:
    return balance <= alert_threshold(deficit_limit)


def days_until_frozen(balance: int, deficit_limit: int, daily_net: int) -> float | None:
    """Days left at a net daily flow (µc/day, negative when spending); None if never."""
    if is_frozen(balance, deficit_limit):
        return 0.0
    if daily_net >= 0:
        return None
    return (balance + deficit_limit) / -daily_net
