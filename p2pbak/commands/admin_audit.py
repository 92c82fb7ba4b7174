"""`p2pbak admin audit`: check the bank's ledger invariants in a coordinator database."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.errors import P2pbakError

DB_HELP = ("The coordinator's database: an SQLite file (PATH or sqlite:PATH) or a "
           "PostgreSQL URL postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, as `serve --db`.")
DbOpt = Annotated[str, typer.Option("--db", metavar="PATH|URL", help=DB_HELP)]


async def open_existing(spec: str) -> Any:
    """An existing coordinator database named by a --db value, not migrated."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.store.db.database import Database
    from p2pbak.store.db.dialect import location

    where = location(spec)
    if isinstance(where, Path) and not where.is_file():
        raise P2pbakError(f"no database at {where}: give the file `p2pbak serve --db` uses")
    return await Database.open(where, migrate=False)


async def _audit(spec: str) -> dict[str, Any]:
    db = await open_existing(spec)
    try:
        return await audit_open(db)
    finally:
        await db.close()


async def audit_open(db: Any) -> dict[str, Any]:
    """The ledger audit's fields for an open coordinator database."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.coordinator.accounts import stored_limit, unfrozen
    from p2pbak.coordinator.model import MarketSettings
    from p2pbak.coordinator.service import DEFAULT_ONLINE_WINDOW
    from p2pbak.store.db import bank
    from p2pbak.store.db.claims import unbacked_payments

    try:
        audit = await bank.audit(db)
    except Exception as exc:  # sqlite: no such table
        raise P2pbakError(f"{db.path} has no bank ledger ({exc}): is it a p2pbak "
                          "coordinator database, started by this version?") from None
    # the read-only pieces of a coordinator that account_state needs
    # (serve's --online-window is not stored: the default window counts the peers online)
    coord: Any = SimpleNamespace(db=db, market=MarketSettings(
        max_deficit=await stored_limit(db)), online_window=DEFAULT_ONLINE_WINDOW)
    stuck = await unfrozen(coord)
    unbacked = await unbacked_payments(db)
    users = await bank.user_accounts(db)
    bank_balance = await bank.balance(db, "bank")
    return {"ok": audit.ok and not stuck and not unbacked, "unbacked": unbacked,
            "sum": audit.sum, "entries": audit.entries,
            "accounts": audit.accounts, "transactions": audit.transactions,
            "unpaired": audit.unpaired, "drifted": audit.drifted, "balance_sum": audit.balance_sum,
            "unfrozen": stuck, "bank_balance": bank_balance,
            "users_balance": sum(b for _, b in users), "users": len(users)}


def say_audit(rep: Any, r: dict[str, Any]) -> None:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.coordinator.accounts import credits

    def mark(good: bool) -> str:
        return "ok" if good else "[bold red]FAILED[/]"

    rep.say(f"ledger: {r['entries']} entries in {r['transactions']} transactions, "
            f"{r['accounts']} accounts")
    rep.say(f"sum over all accounts: {r['sum']} µc: {mark(r['sum'] == 0)}")
    rep.say(f"every movement two entries summing to 0: {mark(not r['unpaired'])}")
    rep.say(f"balances equal their entries: {mark(not r['drifted'] and not r['balance_sum'])}")
    rep.say(f"accounts at their maximum deficit without a freeze: {len(r['unfrozen'])}: "
            f"{mark(not r['unfrozen'])}")
    rep.say(f"supplier payments without a committed placement or an acknowledged transfer: "
            f"{len(r['unbacked'])}: {mark(not r['unbacked'])}")
    rep.say(f"bank {credits(r['bank_balance'])} credits, {r['users']} users "
            f"{credits(r['users_balance'])} credits")


@with_options(config=False, password=False)
def audit(opts: Options, db: DbOpt) -> None:
    """Check the ledger: sum exactly 0, every entry paired, no account below its limit
    without a freeze, every receipt paid backed by evidence (exit 1 if any fails)."""
    rep = opts.reporter()
    result = run(_audit(db))
    rep.summary(**result)
    say_audit(rep, result)
    if not result["ok"]:
        raise P2pbakError("ledger audit failed: see the lines marked FAILED")


def register(app: typer.Typer) -> None:
    groups.admin_app.command("audit")(audit)
