"""Two `p2pbak serve` processes on one PostgreSQL; users and peers are given both URLs
(`init --coordinator A,B`). SIGKILL the first coordinator in the middle of a real backup:
the backup finishes through the second, peers carry on heartbeating and handing in
receipts through it, a restore through it is byte-identical, and the ledger audits clean."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pbak.config import load
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, child_env, start_grid, wait_for
from p2pbak.store.db.database import Database
from tests.support.grid import lines, random_files, summary
from tests.support.postgres import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres_server: Server) -> Iterator[Grid]:
    g = start_grid(tmp_path_factory.mktemp("failover"), 4, heartbeat=0.5,
                   db=postgres_server.new_database(), coordinators=2)
    try:
        yield g
    finally:
        g.stop()
    for proc in g.processes():
        assert "Traceback" not in proc.output(), f"{proc.name} logged a traceback"


async def oldest_heartbeat(url: str) -> int:
    db = await Database.open(url, migrate=False)
    try:
        return int(await db.scalar("SELECT min(last_seen) FROM peers"))
    finally:
        await db.close()


def test_kill_a_coordinator_mid_backup_and_the_client_finishes_through_the_other(
        pair: Grid, tmp_path: Path) -> None:
    alice = pair.add_user("alice")  # `init --coordinator A,B`
    assert load(alice).coordinator_urls == pair.urls and len(pair.urls) == 2
    src = random_files(tmp_path / "src", 5, 8 * 1024, seed=16)  # 40 MiB: 3 packs
    env = child_env({"P2PBAK_CONFIG": str(alice),
                     "P2PBAK_PASSWORD_FILE": str(pair.password_file),
                     "P2PBAK_CACHE_DIR": str(pair.root / "cache")})
    proc = subprocess.Popen([sys.executable, "-m", "p2pbak", "backup", str(src), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # a first pack committed through A: kill A
            if json.loads(line).get("packs_saved", 0) >= 1:
                pair.coordinator.kill()
                killed = int(time.time())
                break
        assert proc.poll() is None, "the backup ended before the coordinator was killed"
        rest, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    done = next(m for m in lines(rest) if m["message_type"] == "summary")
    assert pair.url == pair.urls[1] and not pair.coordinator.alive()

    snaps = lines(pair.cli("snapshots", "--json", config=alice).stdout)
    assert [s["id"] for s in snaps] == [done["snapshot_id"]]
    summary(pair.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=alice))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []

    # every peer agent moved over too: heartbeats after the kill, recorded through B
    wait_for(lambda: asyncio.run(oldest_heartbeat(str(pair.db))) > killed + 1, 30,
             "a peer did not heartbeat through the second coordinator")
    audit = summary(pair.cli("admin", "audit", "--db", str(pair.db), "--json"))
    assert audit["ok"] and audit["sum"] == 0 and audit["entries"] > 0
