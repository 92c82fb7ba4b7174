"""Tasks (repair, testing, audits), audit history, reputation and availability samples (SQL).

A task is queued, then leased to one peer agent with an expiry; a lease that lapses (the
agent or the coordinator died) puts the task back in the queue, so nothing committed is
lost across a restart. Repair grants record which store tickets a task was given, so a
report can only move a pack's placements onto peers the coordinator chose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from p2pbak.store.db.database import Database, batches, fetch_all, fetch_one, marks, now
from p2pbak.store.db.packs import Fragment
from p2pbak.store.db.peers import ACTIVE, DISQUALIFIED, HEALTHY_STATES, LEAVING

REPAIR, AUDIT, TEST_STORE, TEST_FETCH = "repair", "audit", "test-store", "test-fetch"
QUEUED, LEASED, DONE, FAILED = "queued", "leased", "done", "failed"
OK_OUTCOME, FAILED_OUTCOME, OFFLINE_OUTCOME = "ok", "failed", "offline"

_TASK_COLUMNS = ("id, kind, pack_pk, target, fragment_id, size, seed, priority, state, worker,"
                 " lease_expires, not_before, attempts, created")


@dataclass(frozen=True)
class Task:
    id: int
    kind: str
    pack_pk: int | None
    target: str | None
    fragment_id: str | None
    size: int | None
    seed: bytes | None
    priority: int
    state: str
    worker: str | None
    lease_expires: int | None
    not_before: int
    attempts: int
    created: int


@dataclass(frozen=True)
class PackHealth:
    """One pack as the checker sees it."""

    pk: int
    k: int
    n: int
    repair: int
    healthy: int  # fragments on peers still counted (not departed, not disqualified)
    moving: int  # fragments to move: on peers that are leaving, or flagged by allocation


@dataclass(frozen=True)
class PackInfo:
    pk: int
    user: str
    id: str
    machine_id: str | None
    k: int
    n: int
    length: int


@dataclass(frozen=True)
class Holder:
    """A placement with its holder's liveness."""

    index: int
    fragment_id: str
    size: int
    peer_id: str
    url: str
    state: str
    last_seen: int | None
    moving: bool = False  # flagged to move (work allocation): rebuilt elsewhere, still a source


# -- availability samples ------------------------------------------------------------

async def add_samples(db: Database, samples: Sequence[tuple[str, int, bool, str]],
                      t: int | None = None) -> None:
    """[(peer_id, seconds, online, source)] observed at `t`."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO availability_samples(peer_id, at, seconds, online, source)"
            " VALUES (?, ?, ?, ?, ?)", [(p, at, s, int(o), src) for p, s, o, src in samples])


async def evidence(db: Database, since: int) -> dict[str, tuple[int, int]]:
    """peer id → (seconds seen online, seconds observed) since `since`."""
    rows = await db.all(
        "SELECT peer_id, sum(seconds * online), sum(seconds) FROM availability_samples"
        " WHERE at >= ? GROUP BY peer_id", (since,))
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def set_availability(db: Database, estimates: dict[str, float], before: int) -> None:
    """Store the estimates and drop samples older than `before` (out of every window)."""
    async with db.transaction() as conn:
        await conn.executemany("UPDATE peers SET availability = ? WHERE id = ?",
                               [(a, p) for p, a in estimates.items()])
        await conn.execute("DELETE FROM availability_samples WHERE at < ?", (before,))


async def sampled_peers(db: Database) -> list[tuple[str, bool]]:
    """(peer id, whether its state is one heartbeats still move) for every peer."""
    rows = await db.all("SELECT id, state FROM peers")
    return [(r[0], r[1] in HEALTHY_STATES) for r in rows]


# -- the checker ---------------------------------------------------------------------

async def pack_health(db: Database, departed_before: int) -> list[PackHealth]:
    """Every pack with its healthy and to-be-moved fragment counts."""
    rows = await db.all(
        "SELECT p.pk, p.k, p.n, p.repair,"
        " coalesce(sum(CASE WHEN pe.state IN (?, ?)"
        "  AND coalesce(pe.last_seen, pe.first_seen) >= ? THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN pe.state = ? OR f.moving != 0 THEN 1 ELSE 0 END), 0)"
        " FROM packs p LEFT JOIN fragments f ON f.pack_pk = p.pk"
        " LEFT JOIN peers pe ON pe.id = f.peer_id GROUP BY p.pk",
        (*HEALTHY_STATES, departed_before, LEAVING))
    return [PackHealth(*map(int, r)) for r in rows]


async def queue_repairs(db: Database, wanted: Sequence[tuple[int, int]],
                        t: int | None = None) -> int:
    """Queue a repair for each (pack pk, priority) without an open one; refresh the
    priority of queued ones. Returns how many were newly queued."""
    at = now() if t is None else t
    added = 0
    async with db.transaction() as conn:
        for pk, priority in wanted:
            cur = await conn.execute(
                "UPDATE tasks SET priority = ? WHERE kind = ? AND pack_pk = ? AND state = ?",
                (priority, REPAIR, pk, QUEUED))
            if cur.rowcount:
                continue
            cur = await conn.execute(
                "INSERT OR IGNORE INTO tasks(kind, pack_pk, priority, not_before, created)"
                " VALUES (?, ?, ?, ?, ?)", (REPAIR, pk, priority, at, at))
            added += cur.rowcount
    return added


# -- audits and tests: scheduling ----------------------------------------------------

async def audit_candidates(db: Database, online_since: int) -> list[tuple[str, int, str, int]]:
    """(peer id, pack pk, fragment id, size) of one random placement per online active peer
    that holds any and has no open audit."""
    rows = await db.all(
        "SELECT pe.id, (SELECT f.pack_pk || ':' || f.fragment_id || ':' || f.size"
        "  FROM fragments f WHERE f.peer_id = pe.id ORDER BY random() LIMIT 1)"
        " FROM peers pe WHERE pe.state = ? AND pe.last_seen >= ?"
        " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.target = pe.id AND t.kind = ?"
        "  AND t.state IN (?, ?))", (ACTIVE, online_since, AUDIT, QUEUED, LEASED))
    out = []
    for peer_id, pick in rows:
        if pick is not None:
            pk, fid, size = str(pick).split(":")
            out.append((peer_id, int(pk), fid, int(size)))
    return out


async def add_checks(db: Database, kind: str, checks: Sequence[dict[str, Any]],
                     t: int | None = None) -> int:
    """Queue audits or tests: each {"target", "pack_pk"?, "fragment_id", "size", "seed"?,
    "not_before"?}; one open task of a kind per target."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        added = 0
        for c in checks:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO tasks(kind, pack_pk, target, fragment_id, size, seed,"
                " not_before, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, c.get("pack_pk"), c["target"], c["fragment_id"], c["size"],
                 c.get("seed"), c.get("not_before", at), at))
            added += cur.rowcount
    return added


async def close_stale_checks(db: Database, departed_before: int,
                             t: int | None = None) -> int:
    """Queued audits and tests of peers that are gone (departed, leaving, left or
    disqualified) are closed; a test fragment left on such a peer goes on its delete list."""
    at = now() if t is None else t
    gone = ("SELECT id FROM peers WHERE state NOT IN (?, ?)"
            " OR coalesce(last_seen, first_seen) < ?")
    params = (*HEALTHY_STATES, departed_before)
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO deletions(peer_id, fragment_id, size, queued)"
            f" SELECT target, fragment_id, size, ? FROM tasks WHERE kind = ? AND state = ?"
            f" AND target IN ({gone})", (at, TEST_FETCH, QUEUED, *params))
        cur = await conn.execute(
            "UPDATE tasks SET state = ?, finished = ?, result = ?"
            f" WHERE kind != ? AND state = ? AND target IN ({gone})",
            (FAILED, at, json.dumps({"detail": "target gone"}), REPAIR, QUEUED, *params))
    return cur.rowcount


async def queue_deletion(db: Database, peer_id: str, fragment_id: str, size: int) -> None:
    """Put one fragment on a peer's delete list (a test fragment nobody fetched back)."""
    async with db.transaction() as conn:
        await conn.execute("INSERT OR IGNORE INTO deletions(peer_id, fragment_id, size, queued)"
                           " VALUES (?, ?, ?, ?)", (peer_id, fragment_id, size, now()))


async def test_due(db: Database, online_since: int, observed_below: int, since: int,
                   retest_after: int) -> list[str]:
    """Online active peers with under `observed_below` seconds of samples since `since`,
    no open test and no test finished in the last `retest_after` seconds."""
    rows = await db.all(
        "SELECT pe.id FROM peers pe WHERE pe.state = ? AND pe.last_seen >= ?"
        " AND coalesce((SELECT sum(seconds) FROM availability_samples s"
        "  WHERE s.peer_id = pe.id AND s.at >= ?), 0) < ?"
        " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.target = pe.id"
        "  AND t.kind IN (?, ?) AND (t.state IN (?, ?) OR t.finished >= ?))",
        (ACTIVE, online_since, since, observed_below, TEST_STORE, TEST_FETCH, QUEUED, LEASED,
         now() - retest_after))
    return [r[0] for r in rows]


# -- leases --------------------------------------------------------------------------

async def requeue_expired(db: Database, max_attempts: int, t: int | None = None) -> int:
    """Leases that lapsed go back to the queue (or fail after `max_attempts`)."""
    at = now() if t is None else t
    # every worker's poll comes here: a read, and a write transaction only when there is
    # something to requeue or a grant to drop (not one commit per poll)
    if not await db.scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = ? AND lease_expires < ?)"
            " OR EXISTS (SELECT 1 FROM task_grants g JOIN tasks t ON t.id = g.task_id"
            " WHERE t.state != ?)", (LEASED, at, LEASED)):
        return 0
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET state = ?, finished = ?, result = 'lease lapsed too often'"
            " WHERE state = ? AND lease_expires < ? AND attempts + 1 >= ?",
            (FAILED, at, LEASED, at, max_attempts))
        cur = await conn.execute(
            "UPDATE tasks SET state = ?, worker = NULL, lease_expires = NULL,"
            " attempts = attempts + 1 WHERE state = ? AND lease_expires < ?",
            (QUEUED, LEASED, at))
        await _drop_unleased_grants(conn)
    return cur.rowcount


async def _drop_unleased_grants(conn: aiosqlite.Connection) -> None:
    """Store grants only live while their task is leased."""
    await conn.execute("DELETE FROM task_grants WHERE task_id IN"
                       " (SELECT id FROM tasks WHERE state != ?)", (LEASED,))


async def release_silent(db: Database, online_since: int) -> int:
    """Leases held by workers that stopped heartbeating go back to the queue at once."""
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE tasks SET state = ?, worker = NULL, lease_expires = NULL,"
            " attempts = attempts + 1 WHERE state = ? AND worker IN"
            " (SELECT id FROM peers WHERE coalesce(last_seen, 0) < ? OR state != ?)",
            (QUEUED, LEASED, online_since, ACTIVE))
        await _drop_unleased_grants(conn)
    return cur.rowcount


async def queued(db: Database, limit: int, t: int | None = None) -> list[Task]:
    at = now() if t is None else t
    rows = await db.all(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ? AND not_before <= ?"
                        " ORDER BY priority, id LIMIT ?", (QUEUED, at, limit))
    return [Task(*r) for r in rows]


async def busy_workers(db: Database) -> set[str]:
    rows = await db.all("SELECT DISTINCT worker FROM tasks WHERE state = ?", (LEASED,))
    return {r[0] for r in rows}


async def lease(db: Database, task_id: int, worker: str, seconds: int,
                t: int | None = None, fetch: int | None = None) -> bool:
    """Lease a queued task to `worker`; False if someone else got it first. A repair keeps
    in `size` the bytes this lease has the worker fetch (what it is paid to download)."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE tasks SET state = ?, worker = ?, lease_expires = ?,"
            " size = coalesce(?, size) WHERE id = ? AND state = ?",
            (LEASED, worker, at + seconds, fetch, task_id, QUEUED))
    return cur.rowcount == 1


async def get_task(db: Database, task_id: int) -> Task | None:
    row = await db.one(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
    return None if row is None else Task(*row)


async def finish(db: Database, task_id: int, state: str, result: Any,
                 t: int | None = None) -> bool:
    """Close an open task (done or failed) with a JSON result; False if it was not open."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE tasks SET state = ?, finished = ?, result = ?, lease_expires = NULL"
            " WHERE id = ? AND state IN (?, ?)",
            (state, at, json.dumps(result), task_id, QUEUED, LEASED))
        await conn.execute("DELETE FROM task_grants WHERE task_id = ?", (task_id,))
    return cur.rowcount == 1


async def retry(db: Database, task_id: int, delay: int, why: str,
                t: int | None = None) -> None:
    """Back to the queue, not before `delay` seconds from now."""
    at = now() if t is None else t
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET state = ?, worker = NULL, lease_expires = NULL,"
            " attempts = attempts + 1, not_before = ?, result = ? WHERE id = ? AND state = ?",
            (QUEUED, at + delay, json.dumps({"detail": why}), task_id, LEASED))
        await conn.execute("DELETE FROM task_grants WHERE task_id = ?", (task_id,))


# -- repair --------------------------------------------------------------------------

async def pack_info(db: Database, pk: int) -> PackInfo | None:
    row = await db.one("SELECT pk, user_name, id, machine_id, k, n, length FROM packs"
                       " WHERE pk = ?", (pk,))
    return None if row is None else PackInfo(*row)


async def holders(db: Database, pk: int) -> list[Holder]:
    found = await packs_with_holders(db, [pk])
    return found[pk][1] if pk in found else []


async def packs_with_holders(db: Database, pks: Sequence[int]
                             ) -> dict[int, tuple[PackInfo, list[Holder]]]:
    """pack_info and holders of many packs in two queries per batch (a poll scans many)."""
    out: dict[int, tuple[PackInfo, list[Holder]]] = {}
    for part in batches(sorted(set(pks))):
        for r in await db.all("SELECT pk, user_name, id, machine_id, k, n, length FROM packs"
                              f" WHERE pk IN ({marks(part)})", part):
            out[int(r[0])] = (PackInfo(*r), [])
        for r in await db.all(
                "SELECT f.pack_pk, f.idx, f.fragment_id, f.size, f.peer_id, pe.url, pe.state,"
                " pe.last_seen, f.moving FROM fragments f JOIN peers pe ON pe.id = f.peer_id"
                f" WHERE f.pack_pk IN ({marks(part)}) ORDER BY f.pack_pk, f.idx", part):
            out[int(r[0])][1].append(Holder(*r[1:8], moving=bool(r[8])))
    return out


async def add_grants(db: Database, task_id: int, fragments: Sequence[Fragment]) -> None:
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO task_grants(task_id, idx, fragment_id, size, peer_id)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(task_id, idx, peer_id) DO UPDATE SET"
            " fragment_id = excluded.fragment_id, size = excluded.size",
            [(task_id, f.index, f.fragment_id, f.size, f.peer_id) for f in fragments])


async def grants(db: Database, task_id: int) -> list[Fragment]:
    rows = await db.all("SELECT idx, fragment_id, size, peer_id FROM task_grants"
                        " WHERE task_id = ?", (task_id,))
    return [Fragment(*r) for r in rows]


async def move_placements(db: Database, task: Task, worker: str, stored: Sequence[Fragment],
                          t: int | None = None) -> list[Fragment]:
    """In one transaction: each granted stored fragment replaces its index's placement (the
    old copy goes on its holder's delete list), and the task is done. Returns the fragments
    moved (ungranted or clashing ones are not)."""
    at = now() if t is None else t
    moved = []
    async with db.transaction() as conn:
        open_row = await fetch_one(conn, "SELECT 1 FROM tasks WHERE id = ? AND state = ?"
                                   " AND worker = ?", (task.id, LEASED, worker))
        if open_row is None:
            return []
        for f in stored:
            if not await _granted(conn, task.id, f) or await _holds(conn, task.pack_pk, f):
                continue
            old = await fetch_one(conn, "SELECT peer_id, fragment_id, size, merkle_root FROM"
                                  " fragments WHERE pack_pk = ? AND idx = ?",
                                  (task.pack_pk, f.index))
            # a rebuilt fragment has the same id, so the same storage-proof root
            root = old[3] if old is not None and old[1] == f.fragment_id else None
            await conn.execute("DELETE FROM fragments WHERE pack_pk = ? AND idx = ?",
                               (task.pack_pk, f.index))
            if old is not None and old[0] != f.peer_id:
                await conn.execute("INSERT OR IGNORE INTO deletions(peer_id, fragment_id, size,"
                                   " queued) VALUES (?, ?, ?, ?)", (*old[:3], at))
            await conn.execute(
                "INSERT INTO fragments(pack_pk, idx, fragment_id, size, peer_id, stored,"
                " merkle_root) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task.pack_pk, f.index, f.fragment_id, f.size, f.peer_id, at, root))
            moved.append(f)
        await conn.execute(
            "UPDATE tasks SET state = ?, finished = ?, result = ?, lease_expires = NULL"
            " WHERE id = ?", (DONE, at, json.dumps({"moved": len(moved)}), task.id))
        await conn.execute("DELETE FROM task_grants WHERE task_id = ?", (task.id,))
    return moved


async def _granted(conn: Any, task_id: int, f: Fragment) -> bool:
    row = await fetch_one(conn, "SELECT 1 FROM task_grants WHERE task_id = ? AND idx = ?"
                          " AND fragment_id = ? AND size = ? AND peer_id = ?",
                          (task_id, f.index, f.fragment_id, f.size, f.peer_id))
    return row is not None


async def _holds(conn: Any, pack_pk: int | None, f: Fragment) -> bool:
    """The new peer already holds another fragment of the pack (one per peer, never two)."""
    rows = await fetch_all(conn, "SELECT idx FROM fragments WHERE pack_pk = ? AND peer_id = ?",
                           (pack_pk, f.peer_id))
    return any(r[0] != f.index for r in rows)


# -- moving fragments toward low balances (work allocation) --------------------------

AMONG_MAX = 8192  # peers `placements_on` may name in a statement (bound parameters)


async def placements_on(db: Database, peer_ids: Sequence[str], limit: int,
                        among: Sequence[str] | None = None
                        ) -> tuple[list[tuple[int, int, str, int]], dict[int, set[str]]]:
    """(pack pk, index, peer id, size) of up to `limit` fragments on each of `peer_ids`,
    of packs with no fragment moving and no open repair, the largest fragments first;
    and for each of their packs the peers holding a fragment of it and the machine that
    owns it, of the peers `among` only (when given, and no more than AMONG_MAX): those
    are all a plan asks about, where a pack's every holder is 8 rows or more per
    fragment read. One statement per batch of peers, not one per peer nor per pack."""
    out: list[tuple[int, int, str, int]] = []
    holders: dict[int, set[str]] = {}
    only = list(among) if among is not None and len(among) <= AMONG_MAX else None

    def within(column: str) -> str:  # no list: every holder; an empty one: none
        if only is None:
            return ""
        return f" AND {column} IN ({marks(only)})" if only else " AND 1 = 0"
    for part in batches(peer_ids):
        rows = await db.all(
            "WITH r AS (SELECT pack_pk, idx, peer_id, size, rank FROM (SELECT f.pack_pk,"
            " f.idx, f.peer_id, f.size, row_number() OVER (PARTITION BY f.peer_id"
            "  ORDER BY f.size DESC, f.pack_pk) AS rank FROM fragments f"
            f" WHERE f.peer_id IN ({marks(part)})"
            " AND NOT EXISTS (SELECT 1 FROM fragments m WHERE m.pack_pk = f.pack_pk"
            "                 AND m.moving != 0)"
            " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.kind = ? AND t.pack_pk = f.pack_pk"
            "                 AND t.state IN (?, ?))) AS ranked WHERE rank <= ?)"
            " SELECT 0, pack_pk, idx, peer_id, size, rank FROM r"
            " UNION ALL SELECT 1, f.pack_pk, 0, f.peer_id, 0, 0 FROM fragments f"
            f"  WHERE f.pack_pk IN (SELECT pack_pk FROM r){within('f.peer_id')}"
            " UNION ALL SELECT 1, p.pk, 0, p.machine_id, 0, 0 FROM packs p"
            f"  WHERE p.pk IN (SELECT pack_pk FROM r){within('p.machine_id')}",
            (*part, REPAIR, QUEUED, LEASED, limit, *(only or ()), *(only or ())))
        by_peer: dict[str, list[tuple[int, int, str, int, int]]] = {}
        for kind, pk, idx, peer, size, rank in rows:
            if kind:
                if peer:
                    holders.setdefault(int(pk), set()).add(peer)
            else:
                by_peer.setdefault(peer, []).append((int(rank), int(pk), int(idx), peer,
                                                     int(size)))
        out += [row[1:] for peer in part for row in sorted(by_peer.get(peer, []))]
    return out, holders


async def mark_moving(db: Database, fragments: Sequence[tuple[int, int]]) -> int:
    """Flag (pack pk, index) placements to be rebuilt on another supplier."""
    async with db.transaction() as conn:
        cur = await conn.executemany(
            "UPDATE fragments SET moving = 1 WHERE pack_pk = ? AND idx = ?", fragments)
    return cur.rowcount


async def clear_stale_moves(db: Database) -> int:
    """Unflag moves whose pack has no repair under way (it failed, or found no taker):
    the next plan decides afresh."""
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE fragments SET moving = 0 WHERE moving != 0 AND NOT EXISTS"
            " (SELECT 1 FROM tasks t WHERE t.kind = ? AND t.pack_pk = fragments.pack_pk"
            " AND t.state = ?)",
            (REPAIR, LEASED))
    return cur.rowcount


# -- audits and reputation -----------------------------------------------------------

async def record_audit(db: Database, peer_id: str, auditor: str, fragment_id: str,
                       outcome: str, t: int | None = None) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO audits(peer_id, auditor, fragment_id, at, outcome)"
            " VALUES (?, ?, ?, ?, ?)", (peer_id, auditor, fragment_id,
                                        now() if t is None else t, outcome))


async def recent_audits(db: Database, peer_id: str, limit: int) -> list[str]:
    """Outcomes of the last `limit` audits that reached the peer (offline ones skipped)."""
    rows = await db.all("SELECT outcome FROM audits WHERE peer_id = ? AND outcome != ?"
                        " ORDER BY id DESC LIMIT ?", (peer_id, OFFLINE_OUTCOME, limit))
    return [r[0] for r in rows]


async def set_reputation(db: Database, peer_id: str, reputation: float,
                         disqualify: bool) -> bool:
    """Store the score; with `disqualify`, drop the peer. True if it was newly dropped."""
    async with db.transaction() as conn:
        await conn.execute("UPDATE peers SET reputation = ? WHERE id = ?",
                           (reputation, peer_id))
        if not disqualify:
            return False
        cur = await conn.execute("UPDATE peers SET state = ? WHERE id = ? AND state != ?",
                                 (DISQUALIFIED, peer_id, DISQUALIFIED))
    return cur.rowcount == 1
