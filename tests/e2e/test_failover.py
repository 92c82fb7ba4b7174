"""Two `p2pbak serve` processes on one PostgreSQL; users and peers are given both URLs
(`init --coordinator A,B`). SIGKILL the first coordinator in the middle of a real backup:
the backup finishes through the second, every peer carries on heartbeating through it, a
restore through it is byte-identical, and the ledger audits clean."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pbak.config import load
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, child_env, wait_for
from p2pbak.store.db.database import Database
from tests.support.grid import GridSpec, lines, random_files, summary

pytestmark = pytest.mark.slow
GRID = GridSpec(4, heartbeat=0.5, postgres=True, coordinators=2)


async def oldest_heartbeat(url: str) -> int:
    db = await Database.open(url, migrate=False)
    try:
        return int(await db.scalar("SELECT min(last_seen) FROM peers"))
    finally:
        await db.close()


def test_kill_a_coordinator_mid_backup_and_the_client_finishes_through_the_other(
        grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")  # `init --coordinator A,B`
    assert load(alice).coordinator_urls == grid.urls and len(grid.urls) == 2
    src = random_files(tmp_path / "src", 5, 8 * 1024, seed=16)  # 40 MiB: 4 packs
    for peer in grid.peers:  # uploads slowed, so the kill lands mid-backup (it is quick)
        r = grid.cli("supply", "set", "--download", "4MB/s", "--json", config=peer.config)
        assert r.returncode == 0, r.stderr
    time.sleep(4 * grid.heartbeat)  # the agents take their new caps at their heartbeats
    env = child_env({"P2PBAK_CONFIG": str(alice),
                     "P2PBAK_PASSWORD_FILE": str(grid.password_file),
                     "P2PBAK_CACHE_DIR": str(grid.root / "cache")})
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "backup", str(src), "--json"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # a first pack committed through A, more to come: kill A
            msg = json.loads(line)
            if msg["message_type"] == "status" and 1 <= msg.get("packs_saved", 0) < 3:
                grid.coordinator.kill()
                killed = int(time.time())
                break
        else:
            raise AssertionError("the backup ended before the coordinator was killed")
        # read on through the same buffered file: what it read ahead is the summary's start
        rest = proc.stdout.read()
        proc.wait(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.read_text()
    done = next(m for m in lines(rest) if m["message_type"] == "summary")
    assert grid.url == grid.urls[1] and not grid.coordinator.alive()

    snaps = lines(grid.cli("snapshots", "--json", config=alice).stdout)
    assert [s["id"] for s in snaps] == [done["snapshot_id"]]
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=alice))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []

    # every peer agent moved over too: heartbeats after the kill, recorded through B
    wait_for(lambda: asyncio.run(oldest_heartbeat(str(grid.db))) > killed + 1, 30,
             "a peer did not heartbeat through the second coordinator")
    audit = summary(grid.cli("admin", "audit", "--db", str(grid.db), "--json"))
    assert audit["ok"] and audit["sum"] == 0 and audit["entries"] > 0
