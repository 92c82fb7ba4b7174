"""Durability of the repair policy: a simulation of churn, not a test.

Peers come online hour by hour with their own availability and leave for good after a
random lifetime (a newcomer takes each one's place). Packs are coded with the k/n/repair
thresholds `choose_code` picks for these availabilities and placed on distinct peers. Every
hour the checker's rule runs: a holder unseen for longer than the departure timeout counts
as gone; a pack with fewer counted holders than its repair threshold is repaired when k of
its holders are online (k fragments fetched, the missing ones stored on online newcomers),
most endangered first. A pack is lost once fewer than k of its holders still exist.

Prints, per policy (the chosen thresholds; eager: repair at the first loss; lazy: repair at
k+1), the repair traffic per GB stored per day and the data lost per year.

    python bench/durability.py [--peers N] [--packs N] [--days D] [--availability A]
                               [--lifetime DAYS] [--departure HOURS] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pbak.coordinator.checker import plan_repairs
from p2pbak.datapath.erasure import share_length
from p2pbak.datapath.pack import DEFAULT_PACK_SIZE as PACK_BYTES
from p2pbak.market.erasure import choose_code
from p2pbak.market.supply import GB
from p2pbak.store.db.tasks import PackHealth


@dataclass
class Result:
    policy: str
    k: int
    n: int
    repair: int
    repairs: int
    repair_bytes: int
    lost: int


class Churn:
    """Peers in slots that grow as newcomers replace departed peers."""

    def __init__(self, args: argparse.Namespace, rng: np.random.Generator) -> None:
        self.args, self.rng = args, rng
        cap = args.peers * (2 + int(args.days / args.lifetime * 2))
        self.avail = np.zeros(cap)
        self.death = np.zeros(cap, dtype=np.int64)
        self.last_online = np.zeros(cap, dtype=np.int64)
        self.count = 0
        self.current = [self.newcomer(0) for _ in range(args.peers)]

    def newcomer(self, hour: int) -> int:
        i = self.count
        self.count += 1
        spread = self.args.spread
        a = self.args.availability
        self.avail[i] = self.rng.uniform(max(0.02, a - spread), min(0.98, a + spread))
        self.death[i] = hour + max(1, int(self.rng.exponential(self.args.lifetime * 24)))
        self.last_online[i] = hour
        return i

    def step(self, hour: int) -> np.ndarray:
        """Replace the departed, roll who is online this hour; the online mask."""
        for slot, peer in enumerate(self.current):
            if self.death[peer] <= hour:
                self.current[slot] = self.newcomer(hour)
        online = np.zeros(self.count, dtype=bool)
        ids = np.array(self.current)
        online[ids] = self.rng.random(len(ids)) < self.avail[ids]
        self.last_online[: self.count][online] = hour
        return online


def simulate(args: argparse.Namespace, policy: str) -> Result:
    rng = np.random.default_rng(args.seed)
    churn = Churn(args, rng)
    sample = rng.choice(churn.current, size=min(256, args.peers), replace=False)
    code = choose_code([float(churn.avail[i]) for i in sample], max_k=args.max_k)
    k, n = code.k, code.n
    repair = {"chosen": code.repair, "eager": n, "lazy": k + 1}[policy]
    holders = np.array([rng.choice(churn.current, size=n, replace=False)
                        for _ in range(args.packs)])
    lost = np.zeros(args.packs, dtype=bool)
    frag = share_length(PACK_BYTES, k)
    repairs = repair_bytes = 0
    for hour in range(1, args.days * 24 + 1):
        online = churn.step(hour)
        exists = churn.death[holders] > hour
        lost |= exists.sum(axis=1) < k
        gone = hour - churn.last_online[holders] > args.departure
        healthy = (~gone).sum(axis=1)
        due = plan_repairs([PackHealth(int(p), k, n, repair, int(healthy[p]), 0)
                            for p in np.flatnonzero((healthy < repair) & ~lost)])
        for p, _ in due:
            up = online[holders[p]]
            if up.sum() < k:
                continue  # not enough holders online this hour: try again next hour
            pool = np.setdiff1d(np.array(churn.current)[online[churn.current]], holders[p])
            slots = np.flatnonzero(gone[p])[: len(pool)]
            holders[p, slots] = rng.choice(pool, size=len(slots), replace=False)
            repairs += 1
            repair_bytes += (k + len(slots)) * frag
    return Result(policy, k, n, repair, repairs, repair_bytes, int(lost.sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=600)
    ap.add_argument("--packs", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--availability", type=float, default=0.5, help="mean (paper: 12 h/day)")
    ap.add_argument("--spread", type=float, default=0.3, help="availability ± this")
    ap.add_argument("--lifetime", type=float, default=180.0, help="mean days before leaving")
    ap.add_argument("--departure", type=int, default=72, help="departure timeout, hours")
    ap.add_argument("--max-k", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stored = args.packs * PACK_BYTES / GB
    print(f"{args.peers} peers (availability {args.availability}±{args.spread}, mean "
          f"lifetime {args.lifetime:g} days), {args.packs} packs of 16 MiB ({stored:.2f} GB), "
          f"{args.days} days, departure timeout {args.departure} h")
    print(f"{'policy':<8} {'k/n':>8} {'repair':>6} {'repairs':>8} "
          f"{'repair GB/GB/day':>17} {'packs lost':>10} {'GB lost/year':>12}")
    for policy in ("chosen", "eager", "lazy"):
        r = simulate(args, policy)
        per_day = r.repair_bytes / GB / stored / args.days
        lost_year = r.lost * PACK_BYTES / GB * 365 / args.days
        print(f"{r.policy:<8} {f'{r.k}/{r.n}':>8} {r.repair:>6} {r.repairs:>8} "
              f"{per_day:>17.4f} {r.lost:>10} {lost_year:>12.3f}")


if __name__ == "__main__":
    main()
