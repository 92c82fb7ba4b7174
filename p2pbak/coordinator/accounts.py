"""Accounts (paper §2.4, §3.1 "Handling Low Account Balances"): the maximum deficit,
freezing, low-balance alerts and the e-mail that tells the user.

An account at or below −max deficit may not start a backup (the plan route answers 402);
restores are never refused. An account never paid for proven work has no deficit
allowance but what its online peer's counted supply (market.proven) earns in a day: none
without a peer, so a new account must run one before its first backup (a Sybil account
gets nothing for free); once paid, the paper's rule (market.bank.max_deficit) applies.
`serve --max-deficit` replaces both for every account. At ¾ of the limit
(p2pbak.market.bank) an alert is raised. Alerts are refreshed whenever a user's balance
moves and by the billing job; the job also mails alerts not yet sent, through
`serve --smtp-host`, to the address the user gave (`init --email`, `p2pbak email`), or to
the user name if it is an e-mail address.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.message import EmailMessage
from typing import TYPE_CHECKING

from p2pbak.addresses import is_address
from p2pbak.coordinator import placement, proven
from p2pbak.coordinator.model import MarketSettings
from p2pbak.coordinator.tariff import current_prices
from p2pbak.errors import P2pbakError
from p2pbak.market import bank as rules
from p2pbak.store.db import bank
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import users as coordinator_users
from p2pbak.units import DAY

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator
    from p2pbak.store.db.database import Database

log = logging.getLogger("p2pbak.coordinator.accounts")

LIMIT_SETTING = "bank_max_deficit"  # serve's --max-deficit in µc ('' for the rule), for audits


@dataclass(frozen=True)
class AccountState:
    balance: int  # µc
    limit: int  # maximum deficit, µc (positive)
    frozen: bool
    low: bool
    unproven: bool = False  # the limit is the first allowance: never paid for proven work
    supplied: bool = True  # the account was ever paid (every payment is for proven work)

    @property
    def health(self) -> str:
        if self.frozen and self.unproven:
            return ("frozen: no deficit allowance until this account has supplied something "
                    "(run `p2pbak peer run` on this computer and keep it online)")
        if self.frozen:
            return ("frozen: backups paused until this computer earns "
                    f"{credits(1 - self.limit - self.balance)} credits "
                    "(keep its peer online)")
        if self.low:
            return "low: keep this computer online to earn"
        return "healthy"

    def to_dict(self) -> dict[str, object]:
        return {"balance": self.balance, "max_deficit": self.limit, "frozen": self.frozen,
                "low": self.low, "health": self.health, "supplied": self.supplied,
                "alert_threshold": rules.alert_threshold(self.limit)}


def credits(micro: int) -> str:
    """µc as credits with 6 decimals, trailing zeros dropped: -1500000 → '-1.5'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), rules.MICRO)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return sign + text


def daily_storage_charge(table: rules.PriceTable, data_bytes: int) -> int:
    """What a day of `data_bytes` stored costs at these prices (µc)."""
    return -(-table.storage * data_bytes // rules.GB)  # rounded up, in integers


async def first_allowance(coord: Coordinator, user: str) -> int:
    """What the counted supply (market.proven) of the user's online peers earns in a day
    of storage at today's p_S (µc); 0 when none is online."""
    peers = await coordinator_peers.of_user(coord.db, user, coord.online_window)
    if not peers:
        return 0
    counted = await proven.counted(coord, peers)
    _, table = await current_prices(coord)
    return sum(rules.storage_pay(counted[p.id].space, DAY, placement.availability(p), table)
               for p in peers)


async def account_state(coord: Coordinator, user: str) -> AccountState:
    return (await account_states(coord, [user]))[user]


async def account_states(coord: Coordinator, users: Sequence[str]) -> dict[str, AccountState]:
    """Each user's account state, from a few queries per 500 users (the billing job
    refreshes every account: not a handful of queries per user)."""
    settings: MarketSettings = coord.market
    known = await bank.account_facts(coord.db, users)
    _, table = await current_prices(coord)
    out = {}
    for user in users:
        bal, supplied, data_bytes = known[user]
        if settings.max_deficit is not None:
            limit, unproven = settings.max_deficit, False
        else:  # only an account never paid (a new one) needs its peers' allowance
            first = 0 if supplied else await first_allowance(coord, user)
            limit = rules.deficit_limit(daily_storage_charge(table, data_bytes), supplied,
                                        first)
            unproven = not supplied
        out[user] = AccountState(bal, limit, rules.is_frozen(bal, limit),
                                 rules.is_low(bal, limit), unproven, supplied)
    return out


async def account_summary(coord: Coordinator, user: str) -> dict[str, object]:
    """The account as `status` and GET /v1/account show it: state, open alert, prices."""
    state = await account_state(coord, user)
    raised = await bank.alert(coord.db, user)
    p, table = await current_prices(coord)
    return {**state.to_dict(),
            "alert": None if raised is None else {"level": raised[0], "raised": raised[1]},
            "prices": {"p": p.to_dict(), "micro": table.to_dict()}}


async def backup_refusal(coord: Coordinator, user: str) -> str | None:
    """Why this user may not start a backup now (None: it may). Restores never ask."""
    state = await account_state(coord, user)
    if not state.frozen:
        return None
    if state.unproven:
        return (f"account frozen: balance {credits(state.balance)} credits and no deficit "
                "allowance before this account has supplied something: run a peer "
                "(`p2pbak peer run`) on this computer and keep it online, then back up "
                "(restores still work)")
    return (f"account frozen: balance {credits(state.balance)} credits is at the maximum "
            f"deficit of {credits(state.limit)}; keep this computer's peer online to earn "
            "credits (restores still work, nothing stored is touched)")


async def refresh_alert(coord: Coordinator, user: str) -> str | None:
    """Raise, worsen or clear the user's alert from its balance now; the level in force."""
    return (await refresh_alerts(coord, [user]))[user]


async def refresh_alerts(coord: Coordinator, users: Sequence[str]) -> dict[str, str | None]:
    """`refresh_alert` for many users, with one write transaction for the alerts that
    change."""
    levels = {user: "frozen" if state.frozen else "low" if state.low else None
              for user, state in (await account_states(coord, users)).items()}
    await bank.set_alerts(coord.db, levels)
    return levels


async def check_accounts(coord: Coordinator) -> list[tuple[str, str]]:
    """Refresh every user's alert, then mail those not mailed yet (when serve has SMTP
    settings and the user has an address: alert_address). Returns the (user, level) mailed."""
    await bank.set_setting(coord.db, LIMIT_SETTING, str(coord.market.max_deficit or ""))
    await refresh_alerts(coord, [user for user, _ in await bank.user_accounts(coord.db)])
    mailed = []
    for user, level in await bank.unmailed_alerts(coord.db):
        to = await alert_address(coord, user)
        if to and await _email(coord.market, to, await account_state(coord, user)):
            await bank.mark_emailed(coord.db, user)
            mailed.append((user, level))
    return mailed


async def unfrozen(coord: Coordinator) -> list[str]:
    """Users at or below their maximum deficit whose alert does not say frozen (an audit
    invariant: the billing job and every charge keep it empty)."""
    out = []
    users = [user for user, _ in await bank.user_accounts(coord.db)]
    for user, state in (await account_states(coord, users)).items():
        if state.frozen:
            raised = await bank.alert(coord.db, user)
            if raised is None or raised[0] != "frozen":
                out.append(user)
    return out


async def stored_limit(db: Database) -> int | None:
    """The --max-deficit the coordinator last ran with (None: the per-account rule)."""
    value = await bank.setting(db, LIMIT_SETTING)
    return int(value) if value else None


def email_address(user: str) -> str | None:
    """A user name that is an e-mail address is one to write to; others are not."""
    return user if is_address(user) else None


async def alert_address(coord: Coordinator, user: str) -> str | None:
    """Where the user's alerts go (alerts_to of the address it gave)."""
    return alerts_to(user, await coordinator_users.email(coord.db, user))


def alerts_to(user: str, given: str | None) -> str | None:
    """The address the user gave, else its name if that is one."""
    return given or email_address(user)


async def set_alert_address(coord: Coordinator, user: str, address: str | None) -> None:
    """The address for alerts (None: none; the user name then, if it is an address)."""
    await coordinator_users.set_email(coord.db, user, address)


async def _email(settings: MarketSettings, to: str, state: AccountState) -> bool:
    if not (settings.smtp_host and settings.smtp_from):
        return False
    try:
        await asyncio.to_thread(send_mail, settings, to, state)
    except OSError as exc:
        log.warning("low-balance mail to %s failed: %s", to, exc)
        return False
    return True


def send_mail(settings: MarketSettings, to: str, state: AccountState) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = settings.smtp_from, to
    msg["Subject"] = f"p2pbak: your backup account is {state.health.split(':')[0]}"
    msg.set_content(
        f"Your p2pbak account balance is {credits(state.balance)} credits; backups pause "
        f"at -{credits(state.limit)}.\n\n{state.health}.\nRestores always work. Keep a "
        "computer running `p2pbak peer run` online to earn credits, or lend more space or "
        "bandwidth with `p2pbak supply set`.\n")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        smtp.send_message(msg)




def parse_credits(text: str) -> int:
    """'10', '0.5', '0.000001' credits → exact µc (a one-line error otherwise)."""


    try:
        value = Decimal(text.strip()) * rules.MICRO
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise P2pbakError(f"cannot read credits {text!r}: write a non-negative amount with "
                          "at most 6 decimals, e.g. 10 or 0.5")
    return int(value)
