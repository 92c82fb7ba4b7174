"""Audits the coordinator verifies itself, on a real grid (issue 14, attacks 2 and 3).

* A lying auditor: a user whose "peer" (an unreachable URL) heartbeats, polls tasks and
  reports every audit `failed` and every other task failed without doing anything. With
  audits every 2 s it disqualifies no honest peer, is itself marked down and disqualified,
  is never paid for an audit, and backups keep working.
* A peer that deleted its fragments but keeps heartbeating fails the coordinator's own
  challenges, is disqualified, and its fragments are rebuilt elsewhere.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import pytest

from p2pbak import config
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, Peer, free_port
from p2pbak.net.api import CoordinatorClient
from tests.support.e2e_repair import (
    codes,
    fast_grid,
    live_holders,
    placed_on,
    query,
    wait_until,
)
from tests.support.grid import stdlib_tree, summary
from tests.support.liar import RandomBytesFront

pytestmark = pytest.mark.slow

GRID = fast_grid(6)


@pytest.fixture(scope="module")
def alice(grid: Grid, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tree = stdlib_tree(tmp_path_factory.mktemp("src") / "src", parts=("json",),
                       binary_kib=512)
    cfg = grid.add_user("alice", machine="laptop")
    summary(grid.cli("backup", str(tree), "--json", config=cfg))
    return cfg, tree


def state_of(grid: Grid, peer_id: str) -> str:
    rows = query(grid, "SELECT state FROM peers WHERE id = ?", (peer_id,))
    return str(rows[0][0]) if rows else ""


class Liar(threading.Thread):
    """The attacker of the issue, written against the real routes: heartbeats, polls, and
    reports every task failed without touching any peer."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(daemon=True)
        self.cfg = config.load(grid.add_user("liar", cli=False))
        self.stop = threading.Event()
        self.lies = 0

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        url = "http://127.0.0.1:9"  # nothing listens there
        async with CoordinatorClient.from_config(self.cfg) as c:
            await c.announce_peer(url, config.Supply(space=10**12, upload=10**9,
                                                     download=10**9))
            beat = 0.0
            while not self.stop.is_set():
                if time.monotonic() - beat > 0.5:
                    await c.heartbeat(url, 0, 10**12)
                    beat = time.monotonic()
                task = (await c.call("POST", "/v1/tasks/poll", {})).get("task")
                if not task:
                    await asyncio.sleep(0.2)
                    continue
                await c.call("POST", f"/v1/tasks/{task['task_id']}/report",
                             {"outcome": "failed", "detail": "lying auditor"})
                self.lies += task["kind"] == "audit"


def test_a_lying_auditor_disqualifies_nobody_and_is_marked_down(
        grid: Grid, alice: tuple[Path, Path], tmp_path: Path) -> None:
    liar = Liar(grid)
    liar.start()
    try:
        wait_until(lambda: state_of(grid, liar.cfg.machine_id) == "disqualified", 120,
                   "the lying auditor disqualified", grid)
    finally:
        liar.stop.set()
        liar.join(30)
    assert liar.lies >= 3
    honest = [p.peer_id for p in grid.peers]
    assert all(state_of(grid, p) == "active" for p in honest), \
        query(grid, "SELECT id, state, reputation FROM peers")
    # its reports were overruled: the audits it ran are recorded as the holders passing
    assert query(grid, "SELECT count(*) FROM audits WHERE auditor = ? AND outcome = 'failed'",
                 (liar.cfg.machine_id,)) == [(0,)]
    assert query(grid, "SELECT count(*) FROM audits WHERE peer_id = ? AND auditor ="
                       " 'coordinator' AND outcome = 'failed'", (liar.cfg.machine_id,)
                 )[0][0] >= 3
    # never paid for an audit it did not do
    assert query(grid, "SELECT count(*) FROM entries e JOIN transactions t ON t.id = e.txn"
                       " WHERE e.account = 'user:liar' AND e.amount > 0") == [(0,)]
    cfg, tree = alice
    (tree / "new.txt").write_text("backups keep working\n")
    assert summary(grid.cli("backup", str(tree), "--json", config=cfg))["snapshot_id"]


def test_a_peer_that_deleted_its_fragments_is_disqualified_and_repaired(
        grid: Grid, alice: tuple[Path, Path], tmp_path: Path) -> None:
    holders = live_holders(grid)
    names = {p.name: p for p in grid.peers}
    # the peer holding fragments of the most packs (the liar's test added a second backup)
    bad = max(sorted(set.union(*holders.values())),
              key=lambda name: sum(name in h for h in holders.values()))
    grid.add_peers(2)  # room for the rebuilt fragments
    shutil.rmtree(names[bad].storage / "fragments")
    (names[bad].storage / "fragments").mkdir()
    bad_id = names[bad].peer_id
    wait_until(lambda: state_of(grid, bad_id) == "disqualified", 120, f"{bad} disqualified",
               grid)
    assert query(grid, "SELECT count(*) FROM audits WHERE peer_id = ? AND outcome = 'failed'",
                 (bad_id,))[0][0] >= 3
    assert names[bad].process.alive()  # it kept heartbeating all along

    def repaired() -> bool:
        placed, held = placed_on(grid), live_holders(grid)
        return all(bad not in placed.get(pack, {bad}) and len(placed[pack]) == n
                   and placed[pack] <= held[pack] for pack, (_, n) in codes(grid).items())

    wait_until(repaired, 120, f"the packs of {bad} repaired elsewhere", grid)
    cfg, tree = alice
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "out"), "--json",
                     config=cfg))
    assert compare_trees(tree, restored_root(tmp_path / "out", tree)) == []


def test_check_read_data_reads_every_fragment_and_reports_the_bad_holders(
        grid: Grid, alice: tuple[Path, Path]) -> None:
    """With bytes flipped in every fragment one peer holds, and another peer's address
    answered by a server that sends random bytes for every fragment, `check --read-data`
    (which reads all n fragments, not k) names both, and the coordinator audits the first
    on its own."""
    from tests.e2e.test_repair_audit import flip_bytes

    names = {p.name: p for p in grid.peers}
    active = {p.name for p in grid.peers if state_of(grid, p.peer_id) == "active"}
    held, placed = live_holders(grid), placed_on(grid)
    # peers the coordinator places fragments on (not ones keeping copies repair moved away)
    current = set.union(*(held[p] & placed.get(p, set()) for p in held))
    rotten, liar = sorted(current & active)[:2]
    assert flip_bytes(names[rotten].storage) >= 1
    front = _random_bytes_front(grid, names[liar])
    try:
        cfg, _ = alice
        r = grid.cli("check", "--read-data", "--json", config=cfg)
    finally:
        front.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert front.lies >= 1, "the check never read from the peer answering random bytes"
    out = r.stdout + r.stderr
    bad = {names[rotten].peer_id, names[liar].peer_id}
    assert all(f"peer {b} answered wrong" in out for b in bad), out
    others = [p.peer_id for p in grid.peers if p.peer_id not in bad]
    assert not [o for o in others if f"peer {o} answered wrong" in out]
    rotten_id = names[rotten].peer_id
    wait_until(lambda: query(grid, "SELECT count(*) FROM audits WHERE peer_id = ? AND"
                                   " outcome = 'failed'", (rotten_id,))[0][0] >= 1,
               60, f"the coordinator's own audit of {rotten}", grid)


def _random_bytes_front(grid: Grid, peer: Peer) -> RandomBytesFront:
    """Put an attacker at `peer`'s address: the peer moves behind it, advertising the
    attacker's address as its own."""
    old = peer.process.url
    peer.process.stop()
    port = int(old.rsplit(":", 1)[1])
    behind = free_port()
    front = RandomBytesFront(port, f"http://127.0.0.1:{behind}")
    front.start()
    assert front.ready.wait(10), "the attacker's server did not start"
    grid.rerun_peer(peer, advertise=old, port=behind)
    return front
