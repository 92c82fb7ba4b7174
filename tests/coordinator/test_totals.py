"""The kept totals (store/db/totals.py) on both backends: every kind of write to packs and
fragments (commit, a move, a resize, a repair's delete and insert, a bulk insert, garbage
and a deleted user's cascade, `copy-db`) leaves each user's stored bytes and each peer's
held bytes equal to a recount of the rows; the migration backfills an existing database."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from p2pbak.coordinator.service import Coordinator
from p2pbak.store.db import bank, copy, totals
from p2pbak.store.db.database import Database, apply_migrations
from p2pbak.store.db.schema import MIGRATIONS
from tests.coordinator.test_storage_billing import USERS, mid, setup
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("db_backend")

PACKS = [(0, [1, 2], 1000), (1, [0, 2, 3], 77), (2, [0, 1], 5), (0, [3], 10**11)]


async def kept(db: Database) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    stored = {r[0]: (int(r[1]), int(r[2])) for r in await db.all(
        "SELECT user_name, packs, bytes FROM stored WHERE packs != 0")}
    held = {r[0]: int(r[1]) for r in await db.all("SELECT peer_id, bytes FROM held"
                                                  " WHERE bytes != 0")}
    return stored, held


async def writes(db: Database) -> None:
    """One write of each kind, each checked against the recount."""
    steps = [
        ("UPDATE fragments SET peer_id = ? WHERE pack_pk = 1 AND idx = 0", (mid(3),)),
        ("UPDATE fragments SET size = size + 11 WHERE pack_pk = 2", ()),
        ("UPDATE fragments SET moving = 1", ()),  # no total changes
        ("DELETE FROM fragments WHERE pack_pk = 2 AND idx = 1", ()),
        ("INSERT INTO fragments(pack_pk, idx, fragment_id, size, peer_id, stored)"
         " VALUES (2, 1, 'r', 88, ?, 0)", (mid(1),)),
        ("INSERT INTO fragments(pack_pk, idx, fragment_id, size, peer_id, stored)"
         " SELECT pk, 9, 'b' || pk, 3, ?, 0 FROM packs p WHERE NOT EXISTS (SELECT 1"
         " FROM fragments f WHERE f.pack_pk = p.pk AND f.peer_id = ?)", (mid(1), mid(1))),
        ("DELETE FROM packs WHERE pk = 3", ()),  # garbage: its fragments by cascade
        ("DELETE FROM fragments WHERE peer_id = ?", (mid(1),)),  # a leaving peer's, all
        ("DELETE FROM users WHERE name = ?", (USERS[1],)),  # a cascade two tables deep
    ]
    for sql, params in steps:
        async with db.transaction() as conn:
            await conn.execute(sql, params)
        assert await totals.drift(db) == 0, sql


def test_every_write_keeps_the_totals(tmp_path: Path) -> None:
    async def go() -> None:
        coord = await Coordinator.start(postgres.CURRENT.database(tmp_path), run_jobs=False)
        try:
            await setup(coord, PACKS)
            stored, held = await kept(coord.db)
            assert stored == {USERS[0]: (2, 2 * (1000 + 10**11)), USERS[1]: (1, 154),
                              USERS[2]: (1, 10)}
            assert held == {mid(0): 82, mid(1): 1005, mid(2): 1077, mid(3): 77 + 10**11}
            assert await totals.drift(coord.db) == 0
            await writes(coord.db)
            stored, held = await kept(coord.db)
            assert set(stored) == {USERS[0]} and stored[USERS[0]][0] == 2
            # held_totals from the totals is the fragments' own sum
            frag = await coord.db.one("SELECT sum(f.size), sum(f.size * pe.availability)"
                                      " FROM fragments f JOIN peers pe ON pe.id = f.peer_id")
            _, size, weighted = await bank.held_totals(coord.db)
            assert size == int(frag[0]) and weighted == pytest.approx(float(frag[1]))
        finally:
            await coord.stop()

    asyncio.run(go())


def test_drift_sees_a_total_that_is_wrong(tmp_path: Path) -> None:
    async def go() -> None:
        coord = await Coordinator.start(postgres.CURRENT.database(tmp_path), run_jobs=False)
        try:
            await setup(coord, PACKS)
            async with coord.db.transaction() as conn:
                await conn.execute("UPDATE held SET bytes = bytes + 1 WHERE peer_id = ?",
                                   (mid(2),))
            assert await totals.drift(coord.db) == 1
        finally:
            await coord.stop()

    asyncio.run(go())


def test_the_migration_backfills_and_a_copy_rebuilds(tmp_path: Path) -> None:
    async def go() -> None:
        step = MIGRATIONS.index(totals.migrate)
        src = tmp_path / "old.db"  # a database from before the totals, with rows
        coord = await Coordinator.start(src, run_jobs=False)
        try:
            await setup(coord, PACKS)
        finally:
            await coord.stop()
        db = await Database.open(src, migrate=False)
        try:
            async with db.transaction() as conn:
                for table in totals.TABLES:  # back to the schema before the step
                    await conn.execute(f"DROP TABLE {table}")
                    for op in ("ins", "del", "upd"):
                        await conn.execute(f"DROP TRIGGER {table}_{op}")
                await conn.execute("DELETE FROM schema_version WHERE version > ?", (step,))
            assert await apply_migrations(db, MIGRATIONS) == len(MIGRATIONS)
            want = await kept(db)
            assert want[0] and want[1] and await totals.drift(db) == 0
            (tmp_path / "b").mkdir()
            dst = await Database.open(postgres.CURRENT.database(tmp_path / "b"))
            try:
                await copy.copy(db, dst)
                assert await kept(dst) == want and await totals.drift(dst) == 0
                await copy.copy(db, dst, force=True)  # the deletes first, then the rows
                assert await kept(dst) == want
            finally:
                await dst.close()
        finally:
            await db.close()

    with tempfile.TemporaryDirectory():
        asyncio.run(go())
