"""The bank's ledger (paper §2.4): accounts, double-entry rows, price history, alerts (SQL only).

Amounts are integer micro-credits (µc). A transaction books one operation (Table 1); it is
made of movements, each exactly two entries (−x on the payer, +x on the payee) in one
database transaction, so the sum over all accounts, the bank's included, is always 0.
Consumers pay the bank and the bank pays suppliers: every movement has the bank on one side.
A transaction's `ref` names what it pays for (a ticket id, a committed pack) and is unique,
so nothing is ever paid twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from p2pbak.errors import Unbalanced
from p2pbak.market.bank import BANK, Posting
from p2pbak.market.prices import Flows
from p2pbak.store.db.bulk import insert_rows
from p2pbak.store.db.database import Database, batches, fetch_all, fetch_one, marks, now
from p2pbak.store.db.supply import record_caps_in

USER_PREFIX = "user:"

def user_account(user: str) -> str:
    return USER_PREFIX + user


def movements(postings: Sequence[Posting]) -> list[tuple[str, str, int]]:
    """(payer, payee, µc > 0) per non-bank posting: consumers pay the bank, the bank pays
    suppliers (§2.4). The bank's own posting is implied by the others."""
    if sum(p.amount for p in postings) != 0:
        raise Unbalanced(f"postings sum to {sum(p.amount for p in postings)} µc, not 0")
    out = []
    for p in postings:
        if p.account == BANK or p.amount == 0:
            continue
        out.append((p.account, BANK, -p.amount) if p.amount < 0 else
                   (BANK, p.account, p.amount))
    return out


async def book(db: Database, *, kind: str, postings: Sequence[Posting], ref: str | None = None,
               user: str | None = None, quantity: int = 0) -> bool:
    """Book one operation atomically; False (nothing booked) if `ref` was booked before."""
    async with db.transaction() as conn:
        return await book_in(conn, kind=kind, postings=postings, ref=ref, user=user,
                             quantity=quantity)


async def book_in(conn: aiosqlite.Connection, *, kind: str, postings: Sequence[Posting],
                  ref: str | None = None, user: str | None = None, quantity: int = 0) -> bool:
    """`book` inside a transaction the caller holds."""
    moves = movements(postings)
    if ref is not None and await fetch_one(conn, "SELECT 1 FROM transactions WHERE ref = ?",
                                           (ref,)):
        return False
    t = now()
    cur = await conn.execute(
        "INSERT INTO transactions(kind, ref, user_name, quantity, at) VALUES (?, ?, ?, ?, ?)",
        (kind, ref, user, quantity, t))
    txn = cur.lastrowid
    await _post(conn, _entry_rows([(txn, moves)]), t)
    return True


def _entry_rows(booked: Iterable[tuple[int, Sequence[tuple[str, str, int]]]]
                ) -> list[tuple[int, int, str, int]]:
    """(txn, movement, account, amount) of each (txn, its movements): a movement is two
    entries, −x and +x, so the sum stays exactly 0."""
    return [(txn, i, account, delta) for txn, moves in booked
            for i, (payer, payee, amount) in enumerate(moves)
            for account, delta in ((payer, -amount), (payee, amount))]


# every balance the entries from row id ? on touch, moved by their sum: one UPDATE
BALANCES_SINCE = (
    "UPDATE accounts SET balance = balance + d.total FROM (SELECT account,"
    " sum(amount) AS total FROM entries WHERE id >= ? GROUP BY account) AS d"
    " WHERE d.account = accounts.name")

_ENTRY_COLUMNS = (("txn", "bigint"), ("movement", "bigint"), ("account", "text"),
                  ("amount", "bigint"))
_TXN_COLUMNS = (("kind", "text"), ("ref", "text"), ("user_name", "text"),
                ("quantity", "bigint"), ("at", "bigint"))


async def _post(conn: aiosqlite.Connection, rows: Sequence[tuple[int, int, str, int]],
                t: int) -> None:
    """Every account the entry rows touch, the rows, then each touched balance by one
    UPDATE over them: three statements whatever their number (one pipelined batch each on
    PostgreSQL)."""
    if not rows:
        return
    # new row ids all exceed today's largest (SQLite's max + 1, PostgreSQL's sequence)
    first = int((await fetch_one(conn, "SELECT coalesce(max(id), 0) + 1 FROM entries"))[0])
    await insert_rows(conn, "accounts", (("name", "text"), ("created", "bigint")),
                      [(a, t) for a in sorted({r[2] for r in rows})],
                      "ON CONFLICT(name) DO NOTHING")
    await insert_rows(conn, "entries", _ENTRY_COLUMNS, rows)
    await conn.execute(BALANCES_SINCE, (first,))


async def balance(db: Database, account: str) -> int:
    return int(await db.scalar("SELECT coalesce((SELECT balance FROM accounts WHERE name = ?),"
                               " 0)", (account,)))


async def balances(db: Database, accounts: Iterable[str]) -> dict[str, int]:
    """Balance of each account asked (0 for one never touched)."""
    out = dict.fromkeys(accounts, 0)
    for part in batches(out):
        rows = await db.all(f"SELECT name, balance FROM accounts WHERE name IN ({marks(part)})",
                            part)
        out.update({r[0]: int(r[1]) for r in rows})
    return out


async def peer_balances(db: Database, peer_ids: Sequence[str]) -> dict[str, int]:
    """Each peer's owner's balance (a peer id is its machine id)."""
    owners = await peer_owners(db, peer_ids)
    by_account = await balances(db, (user_account(u) for u in owners.values()))
    return {p: by_account[user_account(u)] for p, u in owners.items()}


async def peer_owners(db: Database, peer_ids: Sequence[str]) -> dict[str, str]:
    """machine/peer id → user name, for the ids that exist."""
    out: dict[str, str] = {}
    for part in batches(peer_ids):
        rows = await db.all(f"SELECT id, user_name FROM machines WHERE id IN ({marks(part)})",
                            part)
        out.update({r[0]: r[1] for r in rows})
    return out


@dataclass(frozen=True)
class Audit:
    """The ledger's invariants, as counted by SQL."""

    sum: int  # Σ entries over all accounts: must be exactly 0
    balance_sum: int  # Σ cached balances: must be exactly 0
    entries: int
    accounts: int
    transactions: int
    unpaired: int  # movements that are not exactly two entries summing to 0
    drifted: int  # accounts whose balance is not the sum of their entries

    @property
    def ok(self) -> bool:
        return self.sum == 0 and self.balance_sum == 0 and not self.unpaired and \
            not self.drifted


async def audit(db: Database) -> Audit:
    row = await db.one(
        "SELECT (SELECT coalesce(sum(amount), 0) FROM entries),"
        " (SELECT coalesce(sum(balance), 0) FROM accounts),"
        " (SELECT count(*) FROM entries), (SELECT count(*) FROM accounts),"
        " (SELECT count(*) FROM transactions),"
        " (SELECT count(*) FROM (SELECT 1 FROM entries GROUP BY txn, movement"
        "   HAVING count(*) != 2 OR sum(amount) != 0 OR min(amount) >= 0) AS bad),"
        " (SELECT count(*) FROM accounts a WHERE a.balance !="
        "   (SELECT coalesce(sum(amount), 0) FROM entries e WHERE e.account = a.name))")
    assert row is not None
    return Audit(*(int(v) for v in row))


# -- usage: what the market measures ------------------------------------------------------

async def usage_since(db: Database, since: int, user: str | None = None) -> dict[str, int]:
    """Σ quantity per transaction kind booked at or after `since` (one user's, if given)."""
    sql = "SELECT kind, coalesce(sum(quantity), 0) FROM transactions WHERE at >= ?"
    params: list[object] = [since]
    if user is not None:
        sql += " AND user_name = ?"
        params.append(user)
    rows = await db.all(sql + " GROUP BY kind", params)
    return {r[0]: int(r[1]) for r in rows}


# what the bank pays for without a consumer: repair and testing (the workers' pay, and the
# receipts of the peers they fetched from or stored on), and relays' pay for what they carried
UPKEEP_KINDS = ("upkeep", "fetch", "store", "relay")


async def overhead_flows(db: Database, since: int, until: int) -> Flows:
    """What the ledger booked within [since, until) that measures the overheads (Flows):
    backup bytes charged and their store receipts paid, µc the bank paid for upkeep (its
    side of every movement of a consumer-less upkeep kind), byte-seconds stored."""
    row = await db.one(
        "SELECT coalesce(sum(CASE WHEN kind = 'backup' THEN quantity END), 0),"
        " coalesce(sum(CASE WHEN kind = 'store' AND user_name IS NOT NULL THEN quantity END),"
        " 0), coalesce(sum(CASE WHEN kind = 'storage' THEN quantity END), 0)"
        " FROM transactions WHERE at >= ? AND at < ?", (since, until))
    paid = await db.scalar(
        # bounded by the window: from the window's transactions (index on at) to their
        # entries (index on txn), never the bank's whole history (CROSS JOIN keeps SQLite
        # to that order; PostgreSQL plans it so by itself)
        "SELECT coalesce(-sum(e.amount), 0) FROM transactions t CROSS JOIN entries e"
        f" WHERE e.txn = t.id AND e.account = ? AND t.user_name IS NULL"
        f" AND t.kind IN ({marks(UPKEEP_KINDS)}) AND t.at >= ? AND t.at < ?",
        (BANK, *UPKEEP_KINDS, since, until))
    assert row is not None
    return Flows(backed_up=int(row[0]), backup_stored=int(row[1]), upkeep_paid=int(paid),
                 stored_byte_seconds=int(row[2]), seconds=max(0, until - since))


@dataclass(frozen=True)
class Holding:
    user: str  # whose data
    peer_id: str
    bytes: int  # fragment bytes of that user's packs on that peer
    availability: float


async def holdings(db: Database) -> tuple[dict[str, int], list[Holding]]:
    """(user → bytes of packs stored, every (user, holder) pair with its fragment bytes)."""
    data = {r[0]: int(r[1]) for r in await db.all(
        "SELECT user_name, sum(length) FROM packs GROUP BY user_name")}
    rows = await db.all(
        "SELECT p.user_name, f.peer_id, sum(f.size), max(pe.availability) FROM fragments f"
        " JOIN packs p ON p.pk = f.pack_pk JOIN peers pe ON pe.id = f.peer_id"
        " GROUP BY p.user_name, f.peer_id ORDER BY p.user_name, f.peer_id")
    return data, [Holding(r[0], r[1], int(r[2]), float(r[3])) for r in rows]


async def held_totals(db: Database) -> tuple[int, int, float]:
    """(Σ pack bytes, Σ fragment bytes, Σ fragment bytes × holder availability), in SQL:
    what the price and move jobs need of the holdings, from the kept totals (one row per
    user and per peer, store/db/totals.py), not from every fragment."""
    row = await db.one(
        "SELECT (SELECT coalesce(sum(bytes), 0) FROM stored),"
        " coalesce(sum(h.bytes), 0), coalesce(sum(h.bytes * pe.availability), 0.0)"
        " FROM held h JOIN peers pe ON pe.id = h.peer_id")
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2])


async def marker(db: Database, name: str) -> int | None:
    """A time mark kept by a job (e.g. storage accrued up to), None before the first run."""
    value = await db.scalar("SELECT value FROM settings WHERE name = ?", (name,))
    return None if value is None else int(value)


async def setting(db: Database, name: str) -> str | None:
    value = await db.scalar("SELECT value FROM settings WHERE name = ?", (name,))
    if isinstance(value, bytes):  # PostgreSQL's BYTEA column hands text back as bytes
        return value.decode()
    return None if value is None else str(value)


async def set_setting(db: Database, name: str, value: str) -> None:
    async with db.transaction() as conn:
        await set_marker_in(conn, name, value)


async def set_marker_in(conn: aiosqlite.Connection, name: str, value: int | str) -> None:
    await conn.execute("INSERT INTO settings(name, value) VALUES (?, ?) ON CONFLICT(name)"
                       " DO UPDATE SET value = excluded.value", (name, str(value)))


# -- price history ------------------------------------------------------------------------

@dataclass(frozen=True)
class PriceRow:
    at: int
    rule: str
    p_upload: float
    p_download: float
    prices: dict[str, int]  # PriceTable µc
    g: tuple[float, float] | None
    supply: dict[str, float] | None
    demand: dict[str, float] | None
    state: dict[str, object]
    note: str = ""
    id: int = 0
    overheads: dict[str, float] | None = None  # market.prices.Overheads its q came from

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at, "rule": self.rule, "p_space": 1.0,
                "p_upload": self.p_upload, "p_download": self.p_download,
                "prices_micro": self.prices,
                "g": None if self.g is None else list(self.g),
                "supply": self.supply, "demand": self.demand, "overheads": self.overheads,
                "note": self.note}


_PRICE_COLS = ("id, at, rule, p_upload, p_download, prices, g_upload, g_download, supply,"
               " demand, state, note, overheads")


def _price(row: aiosqlite.Row) -> PriceRow:
    def js(v: str | None) -> dict | None:
        return None if v is None else json.loads(v)

    g = None if row[6] is None else (float(row[6]), float(row[7]))
    return PriceRow(at=int(row[1]), rule=row[2], p_upload=float(row[3]),
                    p_download=float(row[4]), prices=json.loads(row[5]), g=g,
                    supply=js(row[8]), demand=js(row[9]), state=json.loads(row[10]),
                    note=row[11], id=int(row[0]), overheads=js(row[12]))


async def add_price(db: Database, row: PriceRow) -> int:
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO price_history(at, rule, p_upload, p_download, prices, g_upload,"
            " g_download, supply, demand, state, note, overheads)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.at, row.rule, row.p_upload, row.p_download, json.dumps(row.prices),
             None if row.g is None else row.g[0], None if row.g is None else row.g[1],
             None if row.supply is None else json.dumps(row.supply),
             None if row.demand is None else json.dumps(row.demand),
             json.dumps(row.state), row.note,
             None if row.overheads is None else json.dumps(row.overheads)))
    return int(cur.lastrowid or 0)


async def latest_price(db: Database) -> PriceRow | None:
    row = await db.one(f"SELECT {_PRICE_COLS} FROM price_history ORDER BY id DESC LIMIT 1")
    return None if row is None else _price(row)


async def price_history(db: Database, limit: int = 100) -> list[PriceRow]:
    """The last `limit` rows, oldest first."""
    rows = await db.all(f"SELECT {_PRICE_COLS} FROM price_history ORDER BY id DESC LIMIT ?",
                        (limit,))
    return [_price(r) for r in reversed(rows)]


# -- alerts -------------------------------------------------------------------------------

async def alert(db: Database, user: str) -> tuple[str, int] | None:
    """(level, raised at) of the user's open alert, if any."""
    row = await db.one("SELECT level, raised FROM alerts WHERE user_name = ?", (user,))
    return None if row is None else (row[0], int(row[1]))


async def set_alerts(db: Database, levels: dict[str, str | None]) -> set[str]:
    """Open, change or (level None) clear each user's alert: reads them in batches and
    writes the ones that change in one transaction (most refreshes change nothing: no
    write at all). Returns the users whose alert is new or worse than before (the moment
    to tell the user)."""
    held: dict[str, str] = {}
    for part in batches(levels):
        held.update((r[0], r[1]) for r in await db.all(
            f"SELECT user_name, level FROM alerts WHERE user_name IN ({marks(part)})", part))
    changed = {u: level for u, level in levels.items() if held.get(u) != level}
    if not changed:
        return set()
    t = now()
    async with db.transaction() as conn:
        for part in batches(u for u, level in changed.items() if level is None):
            await conn.execute(f"DELETE FROM alerts WHERE user_name IN ({marks(part)})", part)
        await conn.executemany(
            "INSERT INTO alerts(user_name, level, raised) VALUES (?, ?, ?) ON CONFLICT"
            "(user_name) DO UPDATE SET level = excluded.level, raised = excluded.raised,"
            " emailed = 0", [(u, level, t) for u, level in changed.items() if level])
    return {u for u, level in changed.items()
            if level and (u not in held or (held[u], level) == ("low", "frozen"))}


async def unmailed_alerts(db: Database) -> list[tuple[str, str]]:
    """(user, level) of open alerts no e-mail was sent for yet."""
    rows = await db.all("SELECT user_name, level FROM alerts WHERE emailed = 0"
                        " ORDER BY user_name")
    return [(r[0], r[1]) for r in rows]


async def mark_emailed(db: Database, user: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE alerts SET emailed = 1 WHERE user_name = ?", (user,))


async def user_accounts(db: Database) -> list[tuple[str, int]]:
    """(user name, balance) for every user, 0 for those never billed."""
    rows = await db.all(
        "SELECT u.name, coalesce(a.balance, 0) FROM users u LEFT JOIN accounts a"
        " ON a.name = ? || u.name ORDER BY u.name", (USER_PREFIX,))
    return [(r[0], int(r[1])) for r in rows]


async def account_facts(db: Database, users: Sequence[str]) -> dict[str, tuple[int, bool, int]]:
    """user → (its account's balance, whether it was ever credited, bytes of its packs),
    in one query per 500 users (0, False, 0 for a user with none of them)."""
    out = dict.fromkeys(users, (0, False, 0))
    for part in batches(users):
        rows = await db.all(
            "SELECT u.name, coalesce(a.balance, 0), EXISTS (SELECT 1 FROM entries e"
            " WHERE e.account = a.name AND e.amount > 0), (SELECT coalesce(sum(p.length), 0)"
            " FROM packs p WHERE p.user_name = u.name) FROM users u LEFT JOIN accounts a"
            f" ON a.name = ? || u.name WHERE u.name IN ({marks(part)})", (USER_PREFIX, *part))
        out.update({r[0]: (int(r[1]), bool(r[2]), int(r[3])) for r in rows})
    return out


async def first_use(db: Database, user: str) -> int | None:
    """When the user's first operation was booked (None: never)."""
    value = await db.scalar("SELECT min(at) FROM transactions WHERE user_name = ?", (user,))
    return None if value is None else int(value)


async def set_peer_caps(db: Database, peer_id: str, space: int | None, upload: int | None,
                        download: int | None) -> bool:
    """New caps for an announced peer; False if the machine has no peer yet. Its free
    space shrinks to the new cap at once, so nothing more is placed there before the
    agent's next heartbeat (a space of 0: nothing at all)."""
    async with db.transaction() as conn:
        cur = await conn.execute("UPDATE peers SET space = ?, upload = ?, download = ? "
                                 "WHERE id = ?", (space, upload, download, peer_id))
        if cur.rowcount > 0:
            await record_caps_in(conn, peer_id, space, upload, download)
        if space is not None:
            await conn.execute(
                "UPDATE peers SET free_bytes = CASE WHEN stored_bytes + free_bytes > ?"
                " THEN (CASE WHEN stored_bytes < ? THEN ? - stored_bytes ELSE 0 END)"
                " ELSE free_bytes END WHERE id = ?", (space, space, space, peer_id))
    return cur.rowcount > 0


# -- bulk booking (receipts): a few statements for any number of operations -------------

@dataclass(frozen=True)
class Booking:
    """One operation of a bulk booking: its movements (payer, payee, µc > 0)."""

    ref: str
    user: str | None
    quantity: int
    moves: Sequence[tuple[str, str, int]]


async def book_each_in(conn: aiosqlite.Connection,
                       bookings: Sequence[tuple[str, Booking]]) -> list[bool]:
    """Book (kind, operation) pairs in the caller's transaction, as many `book_in` calls
    would (a ref booked before, or earlier in the list, books nothing: False) but with a
    handful of statements for the lot."""
    seen: set[str] = set()
    for part in batches(b.ref for _, b in bookings):
        seen.update(r[0] for r in await fetch_all(
            conn, f"SELECT ref FROM transactions WHERE ref IN ({marks(part)})", part))
    fresh, out = [], []
    for kind, b in bookings:
        out.append(b.ref not in seen)
        if out[-1]:
            fresh.append((kind, b))
            seen.add(b.ref)
    if not fresh:
        return out
    t = now()
    await insert_rows(conn, "transactions", _TXN_COLUMNS,
                      [(kind, b.ref, b.user, b.quantity, t) for kind, b in fresh])
    txn: dict[str, int] = {}
    for part in batches(b.ref for _, b in fresh):
        txn.update((r[1], int(r[0])) for r in await fetch_all(
            conn, f"SELECT id, ref FROM transactions WHERE ref IN ({marks(part)})", part))
    await _post(conn, _entry_rows((txn[b.ref], b.moves) for _, b in fresh), t)
    return out
