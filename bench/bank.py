"""The bank: work allocation by balance against random placement, and receipt throughput.

  1. `--rounds` backups by random owners among `--users` users, billed through the real
     SQLite ledger (q_B at commit, p_D to each supplier by receipt): the spread (standard
     deviation) of balances when placement takes the lowest balances first (§2.4), as a
     ratio to the spread under random placement. Bound: below 0.8.
  2. Receipts settled per second (signature check, replay check, double-entry booking) in
     batches of 100 per ledger transaction, as peers hand them in with a heartbeat, as a
     ratio to one transaction per receipt. Bound: above 1.
Exits 1 if a ratio is outside its bound.

    python bench/bank.py [--rounds R] [--receipts K]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2pbak.coordinator import billing  # noqa: E402
from p2pbak.coordinator.service import Coordinator  # noqa: E402
from tests.coordinator.test_allocation import _simulate  # noqa: E402
from tests.coordinator.test_bank import USERS, machine_id, open_coord, placed_ticket  # noqa: E402

BATCH = 100


def spread(by_balance: bool, rounds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return statistics.pstdev(asyncio.run(_simulate(Path(tmp), by_balance, rounds)))


async def _settle_rate(count: int, batch: int) -> float:
    """Receipts settled per second, handed in `batch` at a time by each supplier."""
    with tempfile.TemporaryDirectory() as tmp:
        coord: Coordinator = await open_coord(Path(tmp))
        try:
            suppliers = len(USERS) - 1
            # stores backed by committed placements: receipts that pay (proof before pay)
            wires = [await placed_ticket(coord, 0, 1 + i % suppliers, 10**6)
                     for i in range(count)]
            start = time.perf_counter()
            for j in range(suppliers):
                mine = wires[j::suppliers]
                for b in range(0, len(mine), batch):
                    await billing.settle_receipts(coord, machine_id(1 + j), mine[b:b + batch])
            return count / (time.perf_counter() - start)
        finally:
            await coord.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--receipts", type=int, default=500)
    args = ap.parse_args()
    fair, rand = spread(True, args.rounds), spread(False, args.rounds)
    ratio = fair / rand
    print(f"balance spread (pstdev, µc) after {args.rounds} backups: lowest-first {fair:.0f}, "
          f"random {rand:.0f}, ratio {ratio:.3f} (bound < 0.8)")
    one, batched = asyncio.run(_settle_rate(args.receipts, 1)), \
        asyncio.run(_settle_rate(args.receipts, BATCH))
    print(f"receipts settled: {one:.0f}/s one per transaction, {batched:.0f}/s in batches of "
          f"{BATCH}; ratio {batched / one:.2f} (bound > 1)")
    return 0 if ratio < 0.8 and batched / one > 1 else 1


if __name__ == "__main__":
    sys.exit(main())
