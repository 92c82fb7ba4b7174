"""Holdings totals kept up to date by the database itself (SQL only).

`stored`: per user, its packs and their bytes (Σ packs.length); `held`: per peer, the bytes
of the fragments it holds (Σ fragments.size). Triggers on `packs` and `fragments` keep them
right in the very transaction of every write, whoever makes it (commit, garbage, repair,
moves, `admin copy-db`, a cascade from a deleted user), so the storage job and the price
job read one row per user or peer instead of every fragment. One definition per engine:
SQLite's triggers are per row; PostgreSQL's per statement over its transition tables, so a
bulk write of millions of fragments updates each peer's row once, not once per fragment.

The tables are made by a migration function (not a statement list), so `copy.py` does not
copy them: the copy's own inserts into `packs` and `fragments` rebuild them on the target.
"""

from __future__ import annotations

from typing import Any

from p2pbak.store.db.dialect import dialect_of

TABLES = ("stored", "held")  # derived tables: never copied, checked by `drift`

_CREATE = (
    """CREATE TABLE stored (
        user_name TEXT PRIMARY KEY,
        packs INTEGER NOT NULL,
        bytes INTEGER NOT NULL)""",
    """CREATE TABLE held (
        peer_id TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL)""",
)

# what each table sums: (table, key, counted rows' source, the value summed)
_SOURCES = (("stored", "user_name", "packs", "length"), ("held", "peer_id", "fragments", "size"))


def _sqlite_triggers() -> list[str]:
    def add(table: str, key: str, row: str, value: str, sign: str) -> str:
        count = f", {sign}1" if table == "stored" else ""
        cols = ", packs" if table == "stored" else ""
        more = ", packs = packs + excluded.packs" if table == "stored" else ""
        return (f"INSERT INTO {table}({key}{cols}, bytes) VALUES ({row}.{key}{count},"
                f" {sign}{row}.{value}) ON CONFLICT({key}) DO UPDATE SET"
                f" bytes = bytes + excluded.bytes{more};")

    out = []
    for table, key, source, value in _SOURCES:
        out += [
            f"CREATE TRIGGER {table}_ins AFTER INSERT ON {source} BEGIN"
            f" {add(table, key, 'NEW', value, '')} END",
            f"CREATE TRIGGER {table}_del AFTER DELETE ON {source} BEGIN"
            f" {add(table, key, 'OLD', value, '-')} END",
            f"CREATE TRIGGER {table}_upd AFTER UPDATE OF {key}, {value} ON {source} BEGIN"
            f" {add(table, key, 'OLD', value, '-')} {add(table, key, 'NEW', value, '')} END",
        ]
    return out


def _pg_delta(table: str, key: str, sets: str) -> str:
    """Add the grouped (key, n rows, Σ value) of `sets` to `table`'s totals."""
    counted = table == "stored"
    cols, sums = (", packs", ", sum(n)") if counted else ("", "")
    changed = "sum(v) != 0" + (" OR sum(n) != 0" if counted else "")
    more = ", packs = t.packs + excluded.packs" if counted else ""
    return (f"INSERT INTO {table} AS t({key}{cols}, bytes) SELECT {key}{sums}, sum(v)"
            f" FROM ({sets}) AS d GROUP BY {key} HAVING {changed} ON CONFLICT({key})"
            f" DO UPDATE SET bytes = t.bytes + excluded.bytes{more};")


def _postgres_triggers() -> list[str]:
    out = []
    for table, key, source, value in _SOURCES:
        plus = f"SELECT {key}, 1 AS n, {value} AS v FROM new_rows"
        minus = f"SELECT {key}, -1 AS n, -{value} AS v FROM old_rows"
        out.append(
            f"CREATE FUNCTION {table}_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF TG_OP = 'INSERT' THEN {_pg_delta(table, key, plus)}"
            f" ELSIF TG_OP = 'DELETE' THEN {_pg_delta(table, key, minus)}"
            f" ELSE {_pg_delta(table, key, plus + ' UNION ALL ' + minus)} END IF;"
            " RETURN NULL; END $$")
        for op, refs in (("INSERT", "NEW TABLE AS new_rows"),
                         ("DELETE", "OLD TABLE AS old_rows"),
                         ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
            out.append(f"CREATE TRIGGER {table}_{op.lower()[:3]} AFTER {op} ON {source}"
                       f" REFERENCING {refs} FOR EACH STATEMENT EXECUTE FUNCTION"
                       f" {table}_sync()")
    return out


# the totals recounted from the rows: the migration's backfill, and what `drift` compares
_RECOUNT = {
    "stored": "SELECT user_name, count(*), sum(length) FROM packs GROUP BY user_name",
    "held": "SELECT peer_id, sum(size) FROM fragments GROUP BY peer_id",
}
_BACKFILL = (f"INSERT INTO stored(user_name, packs, bytes) {_RECOUNT['stored']}",
             f"INSERT INTO held(peer_id, bytes) {_RECOUNT['held']}")


async def migrate(conn: Any) -> None:
    """The schema step: the tables, this engine's triggers, and the totals of the rows the
    database holds already."""
    triggers = _sqlite_triggers() if dialect_of(conn) == "sqlite" else _postgres_triggers()
    for statement in (*_CREATE, *triggers, *_BACKFILL):
        await conn.execute(statement)


_KEPT = {"stored": "SELECT user_name, packs, bytes FROM stored WHERE packs != 0 OR bytes != 0",
         "held": "SELECT peer_id, bytes FROM held WHERE bytes != 0"}


async def drift(db: Any) -> int:
    """Keys whose kept total differs from the rows' recount (0: the triggers kept them
    right): the audit's check of the totals."""
    bad = 0
    for table in TABLES:
        kept = {r[0]: tuple(int(v) for v in r[1:]) for r in await db.all(_KEPT[table])}
        counted = {r[0]: tuple(int(v) for v in r[1:]) for r in await db.all(_RECOUNT[table])}
        counted = {k: v for k, v in counted.items() if any(v)}
        bad += len({k for k, _ in set(kept.items()) ^ set(counted.items())})
    return bad
