"""The settings page's slider route (§3.1): what one slider move costs, against the
coordinator round trip it avoids.

On a real coordinator (`p2pbak serve`) with an initialised user, the settings page
(p2pbak.ui, in this process) is asked GET /api/balance for random slider positions, and the
coordinator POST /v1/supply/quote for the same caps. Prints the median and 95th percentile
of each; ratio: median slider move / median quote. Bound: below 1 (a move must be cheaper
than the round trip, or the pie would lag behind the slider). Exits 1 outside it.

    python bench/settings_page.py [--moves N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2pbak.localgrid.grid import HOST, Grid, free_port, spawn, wait_http  # noqa: E402

GB = 10**9


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[int(0.95 * (len(xs) - 1))]


async def measure(cfg_file: Path, moves: int) -> tuple[list[float], list[float]]:
    import aiohttp

    from p2pbak.config import Supply, load
    from p2pbak.net.api import CoordinatorClient
    from p2pbak.ui.server import Page, start

    rng = random.Random(18)
    page = Page(cfg_file)
    runner, url = await start(page)
    base, token = url.split("?", 1)[0].rstrip("/"), page.token
    local, remote = [], []
    try:
        async with aiohttp.ClientSession() as http, \
                CoordinatorClient.from_config(load(cfg_file)) as coord:
            await coord.supply_quote(Supply())  # warm both up
            async with http.get(f"{base}/api/settings?token={token}") as r:
                r.raise_for_status()
            for _ in range(moves):
                caps = {"space": rng.randint(1, 1000) * GB, "upload": rng.randint(1, 10**6),
                        "download": rng.randint(1, 10**6)}
                t = time.perf_counter()
                async with http.get(f"{base}/api/balance", params={**caps, "token": token}) as r:
                    r.raise_for_status()
                    await r.json()
                local.append(time.perf_counter() - t)
                t = time.perf_counter()
                await coord.supply_quote(Supply(**caps))
                remote.append(time.perf_counter() - t)
    finally:
        await runner.cleanup()
    return local, remote


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        (root / "pw").write_text("pw\n")
        port = free_port()
        coord = spawn("coordinator", ["serve", "--db", str(root / "c.db"), "--listen",
                                      f"{HOST}:{port}"], root / "logs" / "c.log",
                      f"http://{HOST}:{port}")
        grid = Grid(root=root, coordinator=coord, db=root / "c.db", password_file=root / "pw")
        try:
            wait_http(f"{coord.url}/v1/health", coord)
            local, remote = asyncio.run(measure(grid.add_user("bench"), args.moves))
        finally:
            grid.stop()
    (lm, l95), (rm, r95) = _stats(local), _stats(remote)
    ratio = lm / rm
    print(f"slider move (GET /api/balance, priced locally): median {lm * 1e3:.2f} ms, "
          f"p95 {l95 * 1e3:.2f} ms over {len(local)} moves")
    print(f"coordinator quote (POST /v1/supply/quote):      median {rm * 1e3:.2f} ms, "
          f"p95 {r95 * 1e3:.2f} ms")
    print(f"ratio move/quote: {ratio:.3f} (bound: < 1) {'ok' if ratio < 1 else 'OUTSIDE'}")
    return 0 if ratio < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
