"""The ledger's references checked per statement on PostgreSQL (SQL only).

`entries.txn` references `transactions(id)` and `entries.account` references
`accounts(name)`. PostgreSQL checks a declared foreign key row by row (a lookup and a row
lock per entry and key): 16 µs an entry measured, most of a storage run that writes four
million entries at 1M peers. This schema step replaces those two declared keys on
PostgreSQL with statement-level triggers that check the same thing once per statement,
over the distinct keys the statement wrote (an anti-join), and refuse, like the keys did,
deleting or renaming a transaction or account that entries still name. SQLite keeps its
declared keys (a lookup per row, cheap in-process). A violation raises the foreign-key
error (SQLSTATE 23503) either way."""

from __future__ import annotations

from typing import Any

from p2pbak.store.db.dialect import dialect_of

# (referencing column, referenced table, its key)
_REFS = (("txn", "transactions", "id"), ("account", "accounts", "name"))


def _missing(column: str, table: str, key: str) -> str:
    return (f"IF EXISTS (SELECT 1 FROM (SELECT DISTINCT {column} FROM new_rows) AS n WHERE"
            f" NOT EXISTS (SELECT 1 FROM {table} r WHERE r.{key} = n.{column})) THEN RAISE"
            f" foreign_key_violation USING MESSAGE = 'entries.{column} names no row of"
            f" {table}'; END IF;")


def _statements() -> list[str]:
    out = [
        "CREATE FUNCTION entries_refs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        + " ".join(_missing(*ref) for ref in _REFS) + " RETURN NULL; END $$",
        "CREATE TRIGGER entries_refs_ins AFTER INSERT ON entries REFERENCING NEW TABLE AS"
        " new_rows FOR EACH STATEMENT EXECUTE FUNCTION entries_refs()",
        "CREATE TRIGGER entries_refs_upd AFTER UPDATE ON entries REFERENCING NEW TABLE AS"
        " new_rows FOR EACH STATEMENT EXECUTE FUNCTION entries_refs()",
    ]
    for column, table, key in _REFS:
        still = (f"IF EXISTS (SELECT 1 FROM old_rows o WHERE EXISTS (SELECT 1 FROM entries e"
                 f" WHERE e.{column} = o.{key}) AND NOT EXISTS (SELECT 1 FROM {table} r"
                 f" WHERE r.{key} = o.{key})) THEN RAISE foreign_key_violation USING MESSAGE"
                 f" = '{table} row still named by entries.{column}'; END IF;")
        out += [
            f"CREATE FUNCTION {table}_referenced() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN {still} RETURN NULL; END $$",
            f"CREATE TRIGGER {table}_referenced AFTER DELETE ON {table} REFERENCING OLD"
            f" TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {table}_referenced()",
            # a renamed key, row by row: only a statement that sets the key fires it
            f"CREATE FUNCTION {table}_rekeyed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF EXISTS (SELECT 1 FROM entries e WHERE e.{column} = OLD.{key}) THEN RAISE"
            f" foreign_key_violation USING MESSAGE = '{table} row still named by"
            f" entries.{column}'; END IF; RETURN NULL; END $$",
            f"CREATE TRIGGER {table}_rekeyed AFTER UPDATE OF {key} ON {table} FOR EACH ROW"
            f" WHEN (OLD.{key} IS DISTINCT FROM NEW.{key}) EXECUTE FUNCTION"
            f" {table}_rekeyed()",
        ]
    return out


async def migrate(conn: Any) -> None:
    """The schema step: on PostgreSQL, entries' two declared keys become the triggers."""
    if dialect_of(conn) == "sqlite":
        return
    for (name,) in await conn.execute_fetchall(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'entries'::regclass"
            " AND contype = 'f'"):
        await conn.execute(f'ALTER TABLE entries DROP CONSTRAINT "{name}"')
    for statement in _statements():
        await conn.execute(statement)
