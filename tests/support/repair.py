"""A coordinator in-process over a real SQLite file, with users, peers and packs in it.

Used by the repair, audit and availability tests: the coordinator's own store functions
create everything (as its routes would), so the code under test meets real rows.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from p2pbak.coordinator.model import RepairSettings
from p2pbak.coordinator.service import Coordinator
from p2pbak.store.db import packs as coordinator_packs
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import users as coordinator_users
from p2pbak.store.db.database import Database, now
from p2pbak.store.db.packs import Fragment, Pack
from tests.support import postgres

__test__ = False

ONLINE_WINDOW = 60
SETTINGS = RepairSettings(checker_interval=1, departure_timeout=600, audit_interval=1,
                          availability_window=7 * 86400)


def fid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def peer_id(i: int) -> str:
    return f"{i:032x}"


@dataclass
class World:
    coord: Coordinator
    peers: list[str]

    @property
    def db(self) -> Database:
        return self.coord.db

    async def add_peer(self, i: int) -> str:
        pid = peer_id(i)
        await coordinator_users.create_user(
            self.db, user=f"user{i}", salt=b"s" * 16, login_hash=b"h", login_hash_key=b"k",
            keyfile=b"w", machine_id=pid, machine_name="m", secret_hash=b"x")
        await coordinator_peers.announce(self.db, peer_id=pid, url=f"http://127.0.0.1:{9000 + i}",
                                         subnet="127.0.0.0/24", space=10**9, upload=None,
                                         download=None)
        await self.beat(pid)
        self.peers.append(pid)
        return pid

    async def beat(self, pid: str) -> None:
        await coordinator_peers.heartbeat(self.db, peer_id=pid, url=f"http://h/{pid}",
                                          subnet="127.0.0.0/24", stored_bytes=0,
                                          free_bytes=10**9)

    async def set_seen(self, pid: str, when: int, state: str | None = None) -> None:
        """Move a peer's last heartbeat into the past (a peer that went silent)."""
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE peers SET last_seen = ?, first_seen = CASE WHEN"
                               " first_seen < ? THEN first_seen ELSE ? END WHERE id = ?",
                               (when, when, when, pid))
            if state:
                await conn.execute("UPDATE peers SET state = ? WHERE id = ?", (state, pid))

    async def add_pack(self, name: str, holders: Sequence[str], k: int, n: int,
                       repair: int | None = None, owner: int = 0) -> int:
        """A committed pack of `n` indices, fragment i on holders[i]; returns its pk."""
        from p2pbak.coordinator.placement import fragment_size

        length = 100_000
        pack_id = fid(name)
        size = fragment_size(length, k)
        frags = tuple(Fragment(i, fid(f"{name}/{i}"), size, h) for i, h in enumerate(holders))
        user = f"user{owner}"
        await coordinator_packs.add_grants(self.db, user, pack_id, frags, now() + 600)
        pack = Pack(pack_id, k, n, repair if repair is not None else n, len(holders), length,
                    0, frags)
        await coordinator_packs.commit(self.db, user, peer_id(owner), pack)
        return int(await self.db.scalar("SELECT pk FROM packs WHERE id = ?", (pack_id,)))


async def age_tasks(w: World, seconds: int) -> None:
    """Make every queued task look older (past the allocation grace)."""
    async with w.db.transaction() as conn:
        await conn.execute("UPDATE tasks SET not_before = not_before - ?", (seconds,))


@contextlib.asynccontextmanager
async def world(tmp: Path, peers: int, settings: RepairSettings = SETTINGS,
                ) -> AsyncIterator[World]:
    """A coordinator with `peers` online peers (ids peer_id(0..peers-1)), jobs not running."""
    coord = await Coordinator.start(postgres.CURRENT.database(tmp, "coordinator.db"),
                                    ONLINE_WINDOW, run_jobs=False)
    coord.repair = settings
    try:
        w = World(coord, [])
        for i in range(peers):
            await w.add_peer(i)
        yield w
    finally:
        await coord.stop()
