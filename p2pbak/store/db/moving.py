"""Move planning's reads (work allocation, coordinator/moves.py; SQL only). The database
picks the donors (accounts that earn more than they spend, by enough to shed a fragment)
and the receivers (the lowest balances with counted room), so that no row comes back for
a peer the plan cannot use: a million peers are never read into Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from p2pbak.store.db.bank import USER_PREFIX
from p2pbak.store.db.database import Database
from p2pbak.store.db.dialect import FENCE, GREATEST, LEAST
from p2pbak.store.db.supply import (
    SPACE_INPUTS,
    clamped_sql,
    counted_sql,
    num,
    space_caps_sql,
)


class Mover(NamedTuple):
    """A peer as move planning reads it: its owner's account balance (µc) and the net µc
    booked to that account in the window, its availability (unclamped), subnet and the
    room it may still take (bytes: its free space within its counted space; 0 for a
    donor read as a donor)."""

    peer_id: str
    user: str
    balance: int
    flow: int
    availability: float
    subnet: str
    room: int


class Want(NamedTuple):
    """The terms of market.allocation.want, for the database to evaluate per account:
    want = -(balance / horizon + flow × per_flow) µc/day."""

    horizon: float  # days over which a balance is steered back to 0
    per_flow: float  # the window's net flow to µc/day (DAY / window seconds)


# net µc booked to each account since ?: the window's transactions, then their entries
_FLOWS = ("SELECT e.account AS name, sum(e.amount) AS v FROM transactions t"
          " CROSS JOIN entries e WHERE e.txn = t.id AND t.at >= ? GROUP BY e.account")


def _want(w: Want, balance: str, flow: str) -> str:
    return f"-({_float(balance)} / {num(w.horizon)} + {_float(flow)} * {num(w.per_flow)})"


def _float(x: str) -> str:
    """In floating point (PostgreSQL's sums are NUMERIC, its decimal constants too:
    exact, and many times slower)."""
    return f"CAST({x} AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class Window:
    """What `movers` reads: flows booked since `since`; peers in `state` seen since
    `seen_since` (receivers) and their caps' lowest since `caps_since` (market.proven:
    `space_floor` bytes of headroom past the space proven)."""

    since: int
    state: str
    seen_since: int
    caps_since: int
    space_floor: int


async def movers(db: Database, at: Window, w: Want, per_byte: float, clamp: float,
                 limit: int) -> tuple[list[Mover], list[Mover]]:
    """(donors, receivers) in one statement, so the window's flows are summed once.

    Donors: the peers holding fragments whose owner's account must shed more than half
    the income of its smallest fragment there (market.allocation.plan_moves moves
    nothing else): want < -size × earn / 2, earn = `per_byte` × availability (clamped
    to [clamp, 1 - clamp]) µc per byte-day. None: no receivers are read.

    Receivers: the first `limit` peers with room for the donors' smallest fragment in
    work allocation's order (market.allocation.order_by_balance: the lowest-balance
    peer of each subnet first, then the others, by balance; ties in a random order),
    handed back in no order (plan_moves orders them). Room: free space within the
    counted space (market.proven, as coordinator.proven.with_counted_room cuts it),
    evaluated by the database per row."""
    lo, hi = LEAST[db.dialect], GREATEST[db.dialect]
    av = clamped_sql("availability", clamp, lo, hi)
    space = counted_sql("cs", "dk", "ps", str(int(at.space_floor)), lo, hi)
    rows = await db.all(
        f"WITH fl AS ({_FLOWS}), w AS (SELECT a.name, a.balance, coalesce(fl.v, 0) AS v"
        " FROM accounts a LEFT JOIN fl ON fl.name = a.name"
        f" WHERE substr(a.name, 1, {len(USER_PREFIX)}) = ?),"
        # donors, with the smallest fragment each holds
        " d0 AS (SELECT pe.id, m.user_name, w.balance, w.v, pe.availability, pe.subnet,"
        " (SELECT min(f.size) FROM fragments f WHERE f.peer_id = pe.id) AS small"
        f" FROM w JOIN machines m ON m.user_name = substr(w.name, {len(USER_PREFIX) + 1})"
        f" JOIN peers pe ON pe.id = m.id WHERE {_want(w, 'w.balance', 'w.v')} < 0"
        f"{FENCE[db.dialect]}),"  # each min(size) once, not once per reference
        f" d AS (SELECT * FROM d0 WHERE {_want(w, 'balance', 'v')} <"
        f" -{_float('small')} * {num(per_byte)} * {av} / 2),"
        # receivers: counted room per active peer, the first `limit` in allocation order
        f" i AS ({SPACE_INPUTS}),"
        f" c AS (SELECT id, subnet, st, fr, av, ps, {space_caps_sql(hi)} FROM i),"
        f" r AS (SELECT id, subnet, av, {hi}(0, {lo}(fr, {space} - st)) AS room"
        f" FROM c{FENCE[db.dialect]}),"
        " o AS (SELECT r.id, m.user_name, coalesce(a.balance, 0) AS balance, r.av,"
        " r.subnet, r.room FROM r JOIN machines m ON m.id = r.id LEFT JOIN accounts a"
        " ON a.name = ? || m.user_name"
        " WHERE r.room >= (SELECT min(small) FROM d) AND r.room > 0),"
        " ranked AS (SELECT o.*, row_number() OVER (PARTITION BY subnet"
        " ORDER BY balance, random()) AS rn FROM o),"
        " page AS (SELECT id, user_name, balance, av, subnet, room FROM ranked"
        " ORDER BY CASE WHEN rn > 1 THEN 1 ELSE 0 END, balance, random() LIMIT ?)"
        " SELECT 0, id, user_name, balance, v, availability, subnet, 0 FROM d"
        " UNION ALL SELECT 1, p.id, p.user_name, p.balance, coalesce(w.v, 0), p.av,"
        " p.subnet, p.room FROM page p LEFT JOIN w ON w.name = ? || p.user_name",
        (at.since, USER_PREFIX, at.caps_since, at.state, at.seen_since, USER_PREFIX, limit,
         USER_PREFIX))
    donors = sorted(_mover(r[1:]) for r in rows if not r[0])
    return donors, [_mover(r[1:]) for r in rows if r[0]]


def _mover(r: tuple) -> Mover:
    return Mover(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), r[5], int(r[6]))


async def fragment_bytes(db: Database) -> int:
    """Σ bytes of every stored fragment (no join: the move budget needs only the sum)."""
    return int(await db.scalar("SELECT coalesce(sum(size), 0) FROM fragments") or 0)


async def capacity(db: Database, state: str, seen_since: int, seconds: float, clamp: float,
                   uncapped: int) -> tuple[int, int]:
    """(upload, download) bytes the peers in `state` seen since `seen_since` carry over
    `seconds` (market.allocation.daily_capacity summed: a cap of 0 or none counts as
    `uncapped`, availability clamped to [clamp, 1 - clamp]); summed by the database."""
    lo, hi = LEAST[db.dialect], GREATEST[db.dialect]
    av = clamped_sql("availability", clamp, lo, hi)

    def rate(col: str) -> str:
        return f"coalesce(sum(coalesce(nullif({col}, 0), {int(uncapped)}) * {av}), 0)"

    row = await db.one(f"SELECT {rate('upload')}, {rate('download')} FROM peers"
                       " WHERE state = ? AND last_seen >= ?", (state, seen_since))
    assert row is not None
    return int(float(row[0]) * seconds), int(float(row[1]) * seconds)
