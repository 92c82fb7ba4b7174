"""The live market over days, in pure market math (§2.4, §5): users with unequal caps move
their sliders late, consumers pay the bank, the bank pays the suppliers who did the work,
work allocation steers every balance back to 0, frozen accounts start no backups, and the
price update (the coordinator's, hold included) runs once a day.

One day, in the order the coordinator runs it (amounts in market units: effective GB held,
GB/day uploaded and downloaded; money in integer µc):

1. A `lag` share of users re-optimise their caps at today's prices (Definition 1, the
   simulator's CES agents); the others keep yesterday's sliders.
2. Consumers are charged p·(A·d_i) (§3.3: q = Aᵀp, so d·q = p·A·d): storage every day,
   backup only if the account is not frozen (§2.4). Rounded up; the bank keeps the µc.
3. Work allocation (§2.4), cheapest lever first. Each account's target income is its bill
   less balance/horizon (so the balance decays toward 0 over about `horizon` days).
   a. Yesterday's backup is replaced: its fragments leave their holders (pro rata of
      what they hold) and today's pack is placed, with the day's download (new packs,
      repairs) and upload (retrieval, repair sources), on the accounts below their target
      (the lowest balances, §2.4), each the same share of its gap, within its caps (space
      room, upload and download per day); what every target leaves over goes where caps
      leave room, pro rata.
   b. Only then are stored fragments moved (the dear lever: a copy costs an upload and
      a download): from accounts that still earn above target to those below, as much as
      closes the gap, and never more than the donor's spare upload cap and the receiver's
      spare download cap and space room today. The budget is the suppliers' caps, not a
      price threshold, so it does not fall to 0 when bandwidth is dear.
4. The bank pays each supplier p_X per unit of its work, rounded down; moves are upkeep
   the bank pays and charges back to the storage of all consumers pro rata (§3.3).
5. The coordinator audits every holder (market.proven): what it holds passes, so its
   proven space is what it holds and its proven bandwidth what it moved today; each
   user's counted supply for tomorrow is its sliders (at their lowest of yesterday's and
   today's) bounded by that proof plus headroom. `liars` users declare `liar_factor`
   times the caps they would choose and raise them 2% a day; they store what they are
   given, so they are counted like anyone for what they prove.
6. The daily price update from S = Σ counted supply and d = Σ A·d_i. Work allocation's
   rooms (3) are the counted supply too.

Why balances return to 0 (docs/market.md): the bank passes through what it charges (up to
rounding), so Σ targets = Σ bills − Σ balances/horizon is the value of the day's work; as
long as every account's caps are worth at least its target (the flow constraint (2) that
each user's slider choice satisfies, with the buffer of equilibrium prices as slack),
allocation can pay each its target, and balance_{t+1} = balance_t·(1 − 1/horizon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from p2pbak.market import bank as rules
from p2pbak.market.agents import Economy, make_economy, subset, supply_at
from p2pbak.market.caps import supply_from_caps
from p2pbak.market.equilibrium import relative_gap
from p2pbak.market.proven import RATE_FLOOR, SPACE_FLOOR, counted
from p2pbak.market.resources import Resources
from p2pbak.market.update import COORDINATOR, UpdateState, update

MICRO = rules.MICRO


@dataclass(frozen=True)
class LiveSetup:
    users: int = 12
    days: int = 365
    seed: int = 0
    lag: float = 0.3  # share of users who move their sliders each day
    horizon: float = 7.0  # balances are steered back to 0 over about this many days
    start_factor: float = 4.0  # opening prices this far (×) from the daily job's choice
    stored_sigma: float = 0.6  # spread of users' stored data (lognormal σ)
    liars: int = 0  # users whose declared caps are liar_factor × their choice, +2% a day
    liar_factor: float = 1000.0


# market.proven's floors in market units, for a peer online half the time (§2.2)
FLOOR = supply_from_caps(SPACE_FLOOR, RATE_FLOOR, RATE_FLOOR, 0.5).as_tuple()


@dataclass
class LiveDay:
    """The market after one day."""

    day: int
    p: tuple[float, float]  # (p_U, p_D) the day was billed at
    gap: float  # max relative |g| of the true S and d
    balances: list[int]  # µc per user
    bills: list[int]  # µc per user: what the day charged
    bank: int  # µc on the bank's own account
    frozen: list[bool]
    moved: float  # effective GB of stored fragments moved
    supply: tuple[float, float, float] = (0.0, 0.0, 0.0)  # S counted (proven + headroom)
    declared: tuple[float, float, float] = (0.0, 0.0, 0.0)  # Σ sliders as declared


@dataclass
class Ledger:
    """Double-entry in integer µc: every posting moves an amount between two accounts."""

    users: np.ndarray  # int64 balances
    bank: int = 0

    def charge(self, i: int, amount: int) -> None:
        self.users[i] -= amount
        self.bank += amount

    def pay(self, i: int, amount: int) -> None:
        self.users[i] += amount
        self.bank -= amount

    def total(self) -> int:
        return int(self.users.sum()) + self.bank


@dataclass
class State:
    economy: Economy
    caps: np.ndarray  # (N, 3) current sliders, market units
    held: np.ndarray  # (N,) effective GB of fragments each user holds
    ledger: Ledger
    p: Resources
    update: UpdateState | None = None
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    counted: np.ndarray | None = None  # (N, 3) supply counted today: caps bounded by proof

    def rooms(self) -> np.ndarray:
        """What allocation may give each user: its counted supply (its caps before any
        audit)."""
        return self.caps if self.counted is None else self.counted


def micro(credits: float, up: bool) -> int:
    v = credits * MICRO
    return math.ceil(v - 1e-9) if up else math.floor(v + 1e-9)


def open_market(setup: LiveSetup) -> State:
    """Users' sliders at the opening prices, their stored data placed pro rata of space
    caps (blind to balances: the worst start for allocation), every balance 0."""
    e = make_economy(setup.users, seed=setup.seed, stored_sigma=setup.stored_sigma)
    rng = np.random.default_rng([setup.seed, 17])
    angle = float(rng.uniform(0, 2 * math.pi))
    p = Resources(1.0, setup.start_factor ** math.cos(angle),
                  setup.start_factor ** math.sin(angle))
    caps = supply_at(e, np.array(p.as_tuple()))
    stored = e.need[:, 0].sum()
    held = stored * caps[:, 0] / caps[:, 0].sum()
    s = State(e, caps, held, Ledger(np.zeros(e.n, dtype=np.int64)), p, rng=rng)
    s.caps[:setup.liars] *= setup.liar_factor
    # the opening audit: what each holds is proven, no bandwidth yet
    s.counted = count_supply(caps, np.column_stack([held, np.zeros((e.n, 2))]))
    return s


def count_supply(caps: np.ndarray, proven: np.ndarray) -> np.ndarray:
    """market.proven.counted for every user and resource (N, 3)."""
    return np.array([[counted(float(caps[i, x]), float(proven[i, x]), FLOOR[x])
                      for x in range(3)] for i in range(len(caps))])


def run_live(setup: LiveSetup) -> list[LiveDay]:
    s = open_market(setup)
    return [live_day(s, k, setup) for k in range(setup.days)]


def live_day(s: State, k: int, setup: LiveSetup) -> LiveDay:
    e, pa = s.economy, np.array(s.p.as_tuple())
    movers = np.flatnonzero(s.rng.random(e.n) < setup.lag)
    yesterday = s.caps.copy()
    s.caps[:setup.liars] *= 1.02
    movers = movers[movers >= setup.liars]
    if movers.size:
        s.caps[movers] = supply_at(subset(e, movers), pa)
    # §2.4: a frozen account starts no backup (its storage is still billed)
    limits = [rules.max_deficit(micro(float(e.need[i, 0] * pa[0]), True))
              for i in range(e.n)]
    frozen = [rules.is_frozen(int(s.ledger.users[i]), limits[i]) for i in range(e.n)]
    need = e.need.copy()
    backup_space = e.services[:, 0] * e.overheads.space_per_gb  # today's pack, held
    for i in np.flatnonzero(frozen):
        need[i, 2] -= e.overheads.download_per_gb * e.services[i, 0]
    bills = [micro(float(need[i] @ pa), True) for i in range(e.n)]
    for i, b in enumerate(bills):
        s.ledger.charge(i, b)
    work = allocate(s, need, backup_space, frozen, setup.horizon)
    moved = move_fragments(s, work, bills, setup.horizon)
    for i in range(e.n):
        s.ledger.pay(i, micro(float(work[i] @ pa), False))
    # the day's audits: every holder proves what it holds; what it moved was acknowledged
    s.counted = count_supply(np.minimum(yesterday, s.caps), work)
    supply = Resources(*map(float, s.counted.sum(axis=0)))
    demand = Resources(*need.sum(axis=0))
    billed_at = (s.p.upload, s.p.download)
    gap = relative_gap(supply, demand)
    s.p, s.update = update(s.p, supply, demand, s.update, params=COORDINATOR)
    return LiveDay(k, billed_at, gap, [int(v) for v in s.ledger.users], bills,
                   s.ledger.bank, frozen, moved, supply.as_tuple(),
                   tuple(map(float, s.caps.sum(axis=0))))


def _targets(s: State, bills: list[int] | np.ndarray, horizon: float) -> np.ndarray:
    """µc/day each account should earn: its bill, less its balance spread over horizon."""
    return np.asarray(bills, dtype=float) - s.ledger.users.astype(float) / horizon


def allocate(s: State, need: np.ndarray, new_space: np.ndarray, frozen: list[bool],
             horizon: float) -> np.ndarray:
    """Today's work per user (N, 3): space held, upload, download (market units). The
    replaced pack leaves its holders, the new one and the day's bandwidth go to the
    accounts below target in proportion to their gaps, within caps (`fill`)."""
    e, pa = s.economy, np.array(s.p.as_tuple())
    placed = float(sum(new_space[i] for i in range(e.n) if not frozen[i]))
    total_held = s.held.sum()
    s.held -= placed * s.held / total_held if total_held > 0 else 0.0
    bills = [float(need[i] @ pa) * MICRO for i in range(e.n)]
    gap = _targets(s, bills, horizon) - s.held * pa[0] * MICRO
    todo = (placed, float(need[:, 1].sum()), float(need[:, 2].sum()))
    work = np.zeros((e.n, 3))
    work[:, 0] = s.held
    caps = s.rooms()
    rooms = [np.maximum(caps[:, 0] - s.held, 0.0), caps[:, 1].copy(), caps[:, 2].copy()]
    # new storage first: it pays every day it stays, bandwidth only today
    # accounts in deficit first (lowest balances, §2.4): the part of their gap that pays
    # back the deficit, then every gap alike
    catch_up = np.maximum(-s.ledger.users.astype(float) / horizon, 0.0)
    for x in (0, 2, 1):
        left = todo[x]
        for part in (np.minimum(np.maximum(gap, 0.0), catch_up), np.maximum(gap, 0.0)):
            take = fill(left, part / (pa[x] * MICRO), rooms[x], spread=False)
            work[:, x] += take
            rooms[x] -= take
            gap -= take * pa[x] * MICRO
            catch_up = np.maximum(catch_up - take * pa[x] * MICRO, 0.0)
            left -= take.sum()
        work[:, x] += fill(left, np.zeros(e.n), rooms[x])
    s.held = work[:, 0].copy()
    return work


def fill(amount: float, want: np.ndarray, room: np.ndarray, spread: bool = True
         ) -> np.ndarray:
    """Split `amount` of work: each account the same share of what it wants (its gap),
    never beyond its room; what every want leaves over goes pro rata of room left
    (`spread`), or stays unallocated."""
    take = np.zeros_like(room)
    left = amount
    for _ in range(len(room) + 1):  # each round saturates at least one account
        open_ = (want - take > 1e-15) & (room - take > 1e-15)
        if left <= 1e-15 or not open_.any():
            break
        w = np.where(open_, want - take, 0.0)
        lam = min(1.0, left / w.sum())
        grant = np.minimum(lam * w, room - take)
        take += grant
        left -= grant.sum()
    spare = room - take
    if spread and left > 1e-15:  # every target met: the rest where caps leave room
        total = spare.sum()
        take += left * (spare / total if total > 0 else np.full(len(room), 1 / len(room)))
    return take


def move_fragments(s: State, work: np.ndarray, bills: list[int], horizon: float) -> float:
    """Move stored fragments from accounts still earning above target to those below,
    each move within the donor's spare upload, the receiver's spare download and space
    room today (the suppliers' caps bound the budget). The bank pays the copies and
    charges them to the consumers' storage pro rata. Returns the GB moved."""
    e, pa = s.economy, np.array(s.p.as_tuple())
    gap = _targets(s, bills, horizon) - (work @ pa) * MICRO
    caps = s.rooms()
    spare_up = np.maximum(caps[:, 1] - work[:, 1], 0.0)
    spare_down = np.maximum(caps[:, 2] - work[:, 2], 0.0)
    room = np.maximum(caps[:, 0] - work[:, 0], 0.0)
    per_gb = pa[0] * MICRO  # income shifted per GB-day moved
    moved = 0.0
    donors = [int(i) for i in np.argsort(gap) if gap[i] < 0]
    receivers = [int(i) for i in np.argsort(-gap) if gap[i] > 0]
    for d in donors:
        for r in receivers:
            x = min(-gap[d] / per_gb, gap[r] / per_gb, work[d, 0], spare_up[d],
                    spare_down[r], room[r])
            if x <= 0:
                continue
            work[d, 0] -= x
            work[r, 0] += x
            work[d, 1] += x
            work[r, 2] += x
            spare_up[d] -= x
            spare_down[r] -= x
            room[r] -= x
            gap[d] += x * per_gb
            gap[r] -= x * per_gb
            moved += x
    s.held = work[:, 0].copy()
    if moved > 0:  # upkeep: the bank pays the copies, storage pays the bank back
        cost = moved * (pa[1] + pa[2])
        storage = e.need[:, 0]
        for i in range(e.n):
            s.ledger.charge(i, micro(float(cost * storage[i] / storage.sum()), True))
    return moved


def days_of_bill(day: LiveDay) -> list[float]:
    """Each balance in days of that user's bill."""
    return [b / max(bill, 1) for b, bill in zip(day.balances, day.bills, strict=True)]
