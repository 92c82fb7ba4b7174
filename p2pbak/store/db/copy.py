"""Copy a coordinator database to another (SQLite → PostgreSQL to move up, or back): every
table of the schema in dependency order, in one transaction on the target, read in one
transaction on the source (which holds its write lock, so the copy is one consistent state
even while coordinators run: their writes wait until it is done)."""

from __future__ import annotations

import re
from graphlib import TopologicalSorter
from typing import Any

from p2pbak.errors import P2pbakError
from p2pbak.store.db import dialect
from p2pbak.store.db.database import Database, fetch_all, schema_version
from p2pbak.store.db.schema import MIGRATIONS

_CREATE = re.compile(r"CREATE\s+TABLE\s+(\w+)", re.IGNORECASE)
_REFERENCES = re.compile(r"REFERENCES\s+(\w+)", re.IGNORECASE)
_DROP = re.compile(r"^\s*DROP\s+TABLE\s+(\w+)", re.IGNORECASE)
_RENAME = re.compile(r"^\s*ALTER\s+TABLE\s+(\w+)\s+RENAME\s+TO\s+(\w+)", re.IGNORECASE)


def tables_in_order() -> list[str]:
    """Every table the migrations leave, each after the tables it references (a table
    rebuilt under a new name and renamed back is followed through the rename)."""
    graph: dict[str, set[str]] = {}
    for migration in MIGRATIONS:
        for statement in migration if not callable(migration) else ():
            if created := _CREATE.search(statement):
                refs = set(_REFERENCES.findall(statement)) - {created.group(1)}
                graph.setdefault(created.group(1), set()).update(refs)
            elif dropped := _DROP.search(statement):
                graph.pop(dropped.group(1), None)
            elif renamed := _RENAME.search(statement):
                old, new = renamed.groups()
                graph[new] = graph.pop(old, set())
                for refs in graph.values():
                    if old in refs:
                        refs.discard(old)
                        refs.add(new)
    return list(TopologicalSorter(graph).static_order())


async def _columns(db: Database, table: str) -> list[str]:
    return [str(r[0]) for r in await db.all(dialect.COLUMNS[db.dialect], (table,))]


async def row_counts(db: Database) -> dict[str, int]:
    return {t: int(await db.scalar(f"SELECT count(*) FROM {t}")) for t in tables_in_order()}


async def copy(src: Database, dst: Database, *, force: bool = False) -> dict[str, int]:
    """Copy every row of `src` into `dst` (migrated to this version); rows per table.
    A target holding rows already is refused unless `force`, which deletes them first
    (as `pg_restore --clean` does), in the same transaction."""
    versions = await schema_version(src), await schema_version(dst)
    if versions[0] != len(MIGRATIONS) or versions[1] != len(MIGRATIONS):
        raise P2pbakError(f"schema versions differ (source {versions[0]}, target "
                          f"{versions[1]}, this p2pbak {len(MIGRATIONS)}): start "
                          "`p2pbak serve --db` of this version on the source once to migrate it")
    held = {t: n for t, n in (await row_counts(dst)).items() if n}
    if held and not force:
        raise P2pbakError(f"the target {dst.path} is not empty ({sum(held.values())} rows, "
                          f"e.g. {next(iter(held))}): give an empty database, or --force to "
                          "replace its contents")
    order = tables_in_order()
    copied: dict[str, int] = {}
    async with src.transaction() as reader, dst.transaction() as writer:
        for table in reversed(order):
            await writer.execute(f"DELETE FROM {table}")
        for table in order:
            copied[table] = await _copy_table(reader, writer, table,
                                              await _columns(dst, table))
        for statement in dialect.row_id_resets(dst.dialect):
            await writer.execute(statement)
    return copied


async def _copy_table(reader: Any, writer: Any, table: str, columns: list[str]) -> int:
    names = ", ".join(columns)
    rows = [tuple(r) for r in await fetch_all(reader, f"SELECT {names} FROM {table}")]
    if rows:
        await writer.executemany(f"INSERT INTO {table} ({names}) VALUES "
                                 f"({', '.join('?' * len(columns))})", rows)
    return len(rows)
