"""`p2pbak admin copy-db`: move a coordinator's database (SQLite → PostgreSQL, or back),
verified by the ledger audit on both sides."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.admin_audit import DB_HELP, audit_open, open_existing, say_audit
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.errors import P2pbakError

FromOpt = Annotated[str, typer.Option("--from", metavar="PATH|URL",
                                      help=f"The database to copy. {DB_HELP}")]
ToOpt = Annotated[str, typer.Option("--to", metavar="PATH|URL", help=(
    "The database to copy into (an SQLite file is created; a PostgreSQL database must "
    "exist, e.g. `createdb p2pbak`), migrated to this version's schema first."))]
ForceOpt = Annotated[bool, typer.Option("--force", help=(
    "Replace the target's rows if it holds any (else a non-empty target is refused)."))]


async def _copy(source: str, target: str, force: bool) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.store.db import copy
    from p2pbak.store.db.database import Database
    from p2pbak.store.db.dialect import location, redact

    if location(source) == location(target):
        raise P2pbakError("--from and --to name the same database: give another target")
    src = await open_existing(source)
    try:
        dst = await Database.open(location(target))
        try:
            rows = await copy.copy(src, dst, force=force)
            audits = {"source": await audit_open(src), "target": await audit_open(dst)}
        finally:
            await dst.close()
    finally:
        await src.close()
    return {"from": redact(source), "to": redact(target), "tables": len(rows),
            "rows": sum(rows.values()), "rows_per_table": rows, **audits,
            # the copy is the source as it was then: coordinators still running on the source
            # may have booked more since, so the target is held to the rows copied
            "ok": audits["source"]["ok"] and audits["target"]["ok"]
            and audits["target"]["entries"] == rows.get("entries", 0)}


@with_options(config=False, password=False)
def copy_db(opts: Options, source: FromOpt, target: ToOpt, force: ForceOpt = False) -> None:
    """Copy every table of a coordinator database into another in one transaction
    (SQLite to PostgreSQL to move up), then audit the ledger on both (exit 1 if either
    fails). Coordinators on the source may keep running: their writes wait for the copy."""
    rep = opts.reporter()
    result = run(_copy(source, target, force))
    rep.summary(**result)
    rep.say(f"copied {result['rows']} rows of {result['tables']} tables "
            f"from {result['from']} to {result['to']}")
    for side in ("source", "target"):
        rep.say(f"[bold]{side}[/] audit:")
        say_audit(rep, result[side])
    if not result["ok"]:
        raise P2pbakError("the audit of the copy failed: see the lines marked FAILED")


def register(app: typer.Typer) -> None:
    groups.admin_app.command("copy-db")(copy_db)
