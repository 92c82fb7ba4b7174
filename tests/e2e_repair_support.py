"""A real grid whose coordinator repairs and audits fast, and ground-truth readers.

The grid is the one `p2pbak demo` uses (p2pbak.localgrid.grid), with `serve` given short checker,
departure, audit and online intervals so repair happens within a test's time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from p2pbak.localgrid.grid import Grid, fragment_files, pack_code
from tests.grid import make_grid_fixture

__test__ = False

SERVE_ARGS = ("--online-window", "6", "--checker-interval", "1", "--departure-timeout", "8",
              "--audit-interval", "2", "--availability-window", "3600")
HEARTBEAT = 1.0


def fast_grid_fixture(peers: int) -> Any:
    """A module's `grid` fixture: `peers` agents and a coordinator that repairs fast."""
    return make_grid_fixture(peers, heartbeat=HEARTBEAT, serve_args=SERVE_ARGS)


def query(grid: Grid, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """Read the coordinator's database (read-only; WAL lets it run beside the server)."""
    conn = sqlite3.connect(f"file:{grid.db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, tuple(params)))
    finally:
        conn.close()


def live_holders(grid: Grid) -> dict[str, set[str]]:
    """pack id → names of running peers holding an intact fragment of it on disk."""
    alive = {p.name for p in grid.live_peers()}
    return {pack: {name for name, _ in found if name in alive}
            for pack, found in fragment_files(grid).items()}


def codes(grid: Grid) -> dict[str, tuple[int, int]]:
    return {pack: pack_code(found[0][1]) for pack, found in fragment_files(grid).items()}


def placed_on(grid: Grid) -> dict[str, set[str]]:
    """pack id → peer names the coordinator places its fragments on."""
    names = {p.peer_id: p.name for p in grid.peers}
    out: dict[str, set[str]] = {}
    for pack, peer in query(grid, "SELECT p.id, f.peer_id FROM packs p JOIN fragments f"
                                  " ON f.pack_pk = p.pk"):
        out.setdefault(pack, set()).add(names.get(peer, peer))
    return out


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               grid: Grid | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    log = grid.coordinator.output()[-3000:] if grid else ""
    raise AssertionError(f"{what} not reached within {timeout:.0f} s\n{log}")


def kill_keeping_k(grid: Grid, doomed_first: Sequence[str], count: int) -> set[str]:
    """SIGKILL `count` fragment holders, `doomed_first` preferred, every pack keeping k."""
    holders = live_holders(grid)
    k_of = {pack: k for pack, (k, _) in codes(grid).items()}
    candidates = [*doomed_first, *sorted({n for h in holders.values() for n in h})]
    doomed: set[str] = set()
    for name in dict.fromkeys(candidates):
        if len(doomed) == count:
            break
        if all(len(h - doomed - {name}) >= k_of[pack] for pack, h in holders.items()):
            doomed.add(name)
    by_name = {p.name: p for p in grid.peers}
    for name in doomed:
        by_name[name].process.kill()
    return doomed
