"""What peers have proven and the caps they declared (SQL only): the inputs of the
proven-supply rule (p2pbak.market.proven). Each is one grouped query over all peers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pbak.market.proven import Caps, Proven
from p2pbak.store.db.database import Database, now
from p2pbak.store.db.dialect import FENCE, GREATEST, LEAST
from p2pbak.units import DAY, GB

CAP_RETENTION = 90 * 86400  # seconds of cap history kept (longer than any hold window)


async def record_caps_in(conn: Any, peer_id: str, space: int | None, upload: int | None,
                         download: int | None) -> None:
    """Inside the caller's transaction: the caps now in force, and old history pruned."""
    t = now()
    await conn.execute("INSERT INTO cap_history(peer_id, at, space, upload, download)"
                       " VALUES (?, ?, ?, ?, ?)", (peer_id, t, space, upload, download))
    await conn.execute("DELETE FROM cap_history WHERE at < ?", (t - CAP_RETENTION,))


async def lowest_caps(db: Database, since: int) -> dict[str, Caps]:
    """Per peer the lowest of its current caps and those it set since `since` (NULL, no
    cap, is the highest: min() passes over it; a space of 0 is the lowest)."""
    rows = await db.all(
        "SELECT peer_id, min(space), min(upload), min(download) FROM ("
        " SELECT id AS peer_id, space, upload, download FROM peers"
        " UNION ALL SELECT peer_id, space, upload, download FROM cap_history WHERE at >= ?)"
        " caps GROUP BY peer_id", (since,))
    return {r[0]: Caps(*(None if v is None else int(v) for v in r[1:])) for r in rows}


# per peer: bytes a passed audit vouches for, bytes served and received since ? (both
# acknowledged or recorded by a commit); the subqueries of `proven` and `INPUTS`
_SPACE = (
    "SELECT f.peer_id, sum(f.size) AS total FROM fragments f JOIN (SELECT peer_id,"
    " max(id) AS id FROM audits WHERE outcome != 'offline' GROUP BY peer_id) l"
    " ON l.peer_id = f.peer_id JOIN audits a ON a.id = l.id WHERE a.outcome = 'ok'"
    " AND f.stored <= a.at GROUP BY f.peer_id")
_UP = "SELECT peer_id, sum(size) AS total FROM acks WHERE at >= ? GROUP BY peer_id"
_DOWN = (
    "SELECT peer AS peer_id, sum(size) AS total FROM (SELECT machine_id AS peer, size"
    " FROM acks WHERE at >= ? UNION ALL SELECT peer_id AS peer, size FROM fragments"
    " WHERE stored >= ?) moved GROUP BY peer")
# per peer the lowest caps set since ? (a space of NULL is none, of 0 the lowest: lends
# nothing; a rate of NULL is none, and never 0: the routes refuse a zero rate)
_LOW = ("SELECT peer_id, min(space) AS space,"
        " coalesce(min(nullif(upload, 0)), 0) AS upload,"
        " coalesce(min(nullif(download, 0)), 0) AS download"
        " FROM cap_history WHERE at >= ? GROUP BY peer_id")


async def proven(db: Database, since: int) -> dict[str, Proven]:
    """Per peer: bytes of its committed placements stored no later than its last audit,
    when that audit (the last one that reached it, judged on the coordinator's own
    evidence) passed; bytes it served and received since `since` that the receiver
    acknowledged or a commit recorded."""
    space = await db.all(_SPACE)
    up = await db.all(_UP, (since,))
    down = await db.all(_DOWN, (since, since))
    out: dict[str, dict[str, int]] = {}
    for name, rows in (("space", space), ("upload", up), ("download", down)):
        for peer_id, total in rows:
            out.setdefault(peer_id, {})[name] = int(total)
    return {peer_id: Proven(**values) for peer_id, values in out.items()}


INPUT_COLUMNS = ("space", "upload", "download", "disk", "availability", "low_space",
                 "low_upload", "low_download", "proven_space", "proven_upload",
                 "proven_download")
NO_CAP = -1  # a space column of no cap (NULL), apart from a cap of 0


@dataclass(frozen=True)
class SupplyRule:
    """The constants of the per-peer supply rule `online_supply` evaluates in SQL: the
    proven-supply rule (market.proven.counted_columns: window, floors, the rate of no
    cap, availability's clamp), caps to market units (market.caps.supply_from_caps) and
    eq. (4) (market.supply.effective_supply, through market.supply.chained_limits of its
    ratio limits; None for none)."""

    window: float
    space_floor: float
    rate_floor: float
    uncapped: float
    clamp: float
    usable: float
    limits: tuple[tuple[float, ...], ...] | None


async def online_supply(db: Database, state: str, seen_since: int, caps_since: int,
                        work_since: int, rule: SupplyRule) -> tuple[float, float, float]:
    """Σ over the peers `INPUTS` reads of their supply in market units (space,
    upload, download), computed by the database row by row: one statement, nothing per
    peer comes back (fetching a million rows is seconds). The same numbers as
    market.proven.counted_columns then supply_from_caps and effective_supply, but for the
    integer rounding of the counted caps (under a byte each)."""
    lo, hi = LEAST[db.dialect], GREATEST[db.dialect]
    row = await db.one(_supply_sql(lo, hi, FENCE[db.dialect], rule),
                       (caps_since, work_since, work_since, work_since, state, seen_since))
    assert row is not None
    return float(row[0]), float(row[1]), float(row[2])


def num(x: float) -> str:
    """A constant of the rule, inlined (never user input)."""
    return repr(float(x))


def clamped_sql(column: str, clamp: float, lo: str, hi: str) -> str:
    """An availability kept within [clamp, 1 - clamp] (coordinator.placement.clamped)."""
    return f"{lo}({hi}({column}, {num(clamp)}), {num(1 - clamp)})"


def low_sql(a: str, b: str, hi: str) -> str:
    """The lower of two caps (market.proven.lowest; 0 or less: no cap)."""
    return f"CASE WHEN {a} <= 0 THEN {hi}({b}, 0) WHEN {b} <= 0 OR {a} <= {b} THEN {a}" \
           f" ELSE {b} END"


def counted_sql(cap: str, unset: str, proof: str, floor: str, lo: str, hi: str) -> str:
    """One resource's counted supply (market.proven.counted; a cap of 0: `unset`)."""
    return f"{lo}(CASE WHEN {cap} > 0 THEN {cap} ELSE {unset} END, {proof} +" \
           f" {hi}({floor}, {proof}))"


def space_caps_sql(hi: str) -> str:
    """Columns cs (the lowest space cap, 0 for none) and dk (the disk an unset cap
    stands for, 0 when a cap of 0 lends nothing) of a row of `INPUTS`."""
    return f"CASE WHEN sp = 0 OR ls = 0 THEN 0 ELSE {low_sql(f'{hi}(sp, 0)', 'ls', hi)}" \
           " END AS cs, CASE WHEN sp = 0 OR ls = 0 THEN 0 ELSE dk END AS dk"


def _supply_sql(lo: str, hi: str, fence: str, rule: SupplyRule) -> str:
    def low(a: str, b: str) -> str:
        return low_sql(a, b, hi)

    def counted(cap: str, unset: str, proof: str, floor: str) -> str:
        return counted_sql(cap, unset, proof, floor, lo, hi)

    uncapped, day_gb = num(rule.uncapped), num(DAY / GB)
    steps = [
        f"i AS ({INPUTS})",
        f"c AS (SELECT {space_caps_sql(hi)},"
        f" {low('up', 'lu')} AS cu, {low('dn', 'ld')} AS cd, av, ps, pu, pd,"
        f" {hi}({num(rule.window)} * {hi}({clamped_sql('av', rule.clamp, lo, hi)}, 1e-6),"
        " 1.0) AS o FROM i)",
        f"k AS (SELECT {counted('cs', 'dk', 'ps', num(rule.space_floor))} AS ks,"
        f" {counted('cu', uncapped, 'pu / o', num(rule.rate_floor))} AS ku,"
        f" {counted('cd', uncapped, 'pd / o', num(rule.rate_floor))} AS kd, av FROM c)",
        f"e0 AS (SELECT {hi}(ks, 0) / {num(GB)} * av * {num(rule.usable)} AS s,"
        f" CASE WHEN ku > 0 THEN ku ELSE {uncapped} END * {day_gb} * av AS u,"
        f" CASE WHEN kd > 0 THEN kd ELSE {uncapped} END * {day_gb} * av AS d FROM k{fence})"]
    r, names = rule.limits, ("s", "u", "d")
    if r is not None:  # eq. (4) in one pass, through the chained bounds (one reference
        # to each column of e0 per bound: passes over passes would nest it 27 times)
        parts = [f"{lo}({x}, " + ", ".join(f"{num(r[a][b])} * {names[b]}" for b in range(3)
                                           if b != a) + f") AS {x}"
                 for a, x in enumerate(names)]
        steps.append(f"e1 AS (SELECT {', '.join(parts)} FROM e0)")
    return f"WITH {', '.join(steps)} SELECT coalesce(sum(s), 0), coalesce(sum(u), 0)," \
           f" coalesce(sum(d), 0) FROM e{len(steps) - 4}"


_SPACE_COLUMNS = (
    f"coalesce(p.space, {NO_CAP}) AS sp, p.stored_bytes + p.free_bytes AS dk,"
    f" p.availability AS av, coalesce(l.space, {NO_CAP}) AS ls, coalesce(s.total, 0) AS ps,"
    " p.id AS id, p.subnet AS subnet, p.stored_bytes AS st, p.free_bytes AS fr")
_SPACE_JOINS = (f"LEFT JOIN ({_LOW}) l ON l.peer_id = p.id"
                f" LEFT JOIN ({_SPACE}) s ON s.peer_id = p.id")
_LIVE = " WHERE p.state = ? AND p.last_seen >= ?"
INPUTS = (  # per active peer seen since ?: its caps, the lowest since ?, its proofs
    f"SELECT {_SPACE_COLUMNS}, coalesce(p.upload, 0) AS up, coalesce(p.download, 0) AS dn,"
    " coalesce(l.upload, 0) AS lu, coalesce(l.download, 0) AS ld,"
    " coalesce(u.total, 0) AS pu, coalesce(d.total, 0) AS pd FROM peers p"
    f" {_SPACE_JOINS} LEFT JOIN ({_UP}) u ON u.peer_id = p.id"
    f" LEFT JOIN ({_DOWN}) d ON d.peer_id = p.id{_LIVE}")
# the same, of space only (no bandwidth proofs: those scan the window's transfers):
# parameters caps since, state, seen since
SPACE_INPUTS = f"SELECT {_SPACE_COLUMNS} FROM peers p {_SPACE_JOINS}{_LIVE}"
