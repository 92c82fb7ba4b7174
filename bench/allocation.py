"""Work allocation over simulated days (§2.4): balances with and without moving stored work,
and the price history of the live market, on a real coordinator database.

  1. The scenario of tests/coordinator/test_days.py (`BALANCES`: 30 users of similar size, peers
     online 75-95% of the time, prices fixed): the standard deviation of balances, in days
     of the mean storage bill, after each day with work allocation's moves and without
     them. Ratio: the last day's spread with moves / without. Bound: below 1/3.
  2. The live market of the same file (12 users, the daily price job): max |g| per day and
     the bank's balance, which the measured overheads keep near 0. Bound: the last five
     days' max |g| below 1e-3.
  3. Scenario 1 with the daily price job (no bound: it shows where moves stop paying):
     prices, spread and fragments moved per run.
Exits 1 if a ratio is outside its bound.

    python bench/allocation.py [--days D]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.coordinator.test_days import BALANCES, TOLERANCE, Clock, Scenario, simulate  # noqa: E402


def run(s: Scenario) -> tuple[list[float], list[float], int, float]:
    """(spread per day, max |g| per priced day, fragments moved, the bank's credits)."""
    clock = Clock()
    real, time.time = time.time, clock  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            history, m = asyncio.run(simulate(Path(tmp), clock, s))
            gaps = [max(map(abs, r.g)) for r in history if r.g is not None]
            return m.spread, gaps, m.moved, m.bank_balance / 1e6
    finally:
        time.time = real  # type: ignore[assignment]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=BALANCES.days)
    days = ap.parse_args().days
    steered, _, moved, _ = run(replace(BALANCES, days=days))
    drift, _, _, _ = run(replace(BALANCES, days=days, moves=False))
    print("day  spread with moves  without")
    for k, (a, b) in enumerate(zip(steered, drift, strict=True)):
        print(f"{k:3d}  {a:17.2f}  {b:7.2f}")
    ratio = steered[-1] / drift[-1]
    print(f"fragments moved: {moved}; last-day spread ratio with/without: {ratio:.3f} "
          "(bound < 0.333)")
    _, gaps, _, credits = run(Scenario(users=12, days=20))
    print("max |g| per day: " + " ".join(f"{g:.1e}" for g in gaps))
    print(f"live market: last five days max |g| {max(gaps[-5:]):.1e} (bound < {TOLERANCE}); "
          f"bank balance after 20 days {credits:.1f} credits")
    ok = ratio < 1 / 3 and max(gaps[-5:]) < TOLERANCE
    live, live_gaps, moved, _ = run(replace(BALANCES, days=days, live_prices=True))
    print(f"scenario 1 with live prices: {moved} fragments moved; spread per day "
          + " ".join(f"{x:.2f}" for x in live) + "; max |g| per day "
          + " ".join(f"{g:.1e}" for g in live_gaps))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
