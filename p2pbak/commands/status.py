"""`p2pbak status`: is the coordinator reachable, is this machine's peer online, what is stored."""

from __future__ import annotations

import time
from typing import Any

import typer

from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.supply_set import caps_dict
from p2pbak.config import format_size, load
from p2pbak.errors import Unreachable

LABELS = [("user", "user"), ("machine_name", "machine"), ("peer_online", "this machine's peer"),
          ("snapshots", "snapshots"), ("packs", "packs"),
          ("bytes_backed_up", "backed up"), ("bytes_stored_for_others", "stored for others"),
          ("reached", "reached by others"), ("peers_online", "peers online"),
          ("code", "erasure code for a new pack"),
          ("availability", "predicted availability")]


async def _status(cfg: Any) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient
    from p2pbak.ui.server import published

    async with CoordinatorClient.from_config(cfg) as coord:
        health = await coord.health()
        status = await coord.status()
        quote = await coord.supply_quote(cfg.supply)  # §3.1: backup space in market terms
    pinned = not cfg.ticket_key or health.get("ticket_key") == cfg.ticket_key
    return {"coordinator": cfg.coordinator, "coordinator_reachable": True,
            "ticket_key_matches": pinned, **status,
            "backup_space_available": quote.get("available_bytes"),
            "machine_availability": quote.get("availability"),
            "caps": caps_dict(cfg.supply), "settings_url": published(cfg.path)}


def _span(seconds: Any) -> str:
    s = int(seconds or 0)
    return f"{s // 60} min" if s >= 120 and s % 60 == 0 else f"{s} s"


def _human(key: str, value: Any, fields: dict[str, Any]) -> str:
    if key.startswith("bytes") and isinstance(value, int):
        return format_size(value)
    if isinstance(value, bool):
        return "online" if value else "offline"
    if key == "availability" and isinstance(value, float):
        return f"{value:.6%}"
    if key == "code" and isinstance(value, dict):
        note = "" if value.get("meets_target", True) else " (below the target: add peers)"
        return f"any {value['k']} of {value['n']} fragments{note}"
    if key == "reached" and isinstance(value, dict):
        return _reached(value)
    if key == "peers_online" and isinstance(value, int):
        return f"{value} (heartbeat in the last {_span(fields.get('online_window'))})"
    if value is None:
        return "not enough online peers"
    return str(value)


def _reached(value: dict[str, Any]) -> str:
    how = value.get("how", "?")
    if how == "relayed":
        return f"relayed via {value.get('via')} ({value.get('url')})"
    if how == "hole-punched":
        return (f"hole-punched ({value.get('links')} direct links so far; rendezvous and "
                f"fallback: relay {value.get('via')}, {value.get('url')})")
    if how == "none":
        return "no peer runs on this machine"
    by = f" ({value['via']})" if how == "port-mapped" and value.get("via") else ""
    return f"{how}{by} at {value.get('url')}"


def _account(rep: Any, account: Any, fields: dict[str, Any]) -> None:
    """Account health in words (§2.4: the balance itself is not for people) and the alert."""
    if not isinstance(account, dict):
        return

    available = fields.get("backup_space_available")
    if isinstance(available, int):
        rep.say(f"backup space: {format_size(int(fields.get('bytes_backed_up') or 0))} used, "
                f"{format_size(available)} more available with this machine's caps")
    if isinstance(fields.get("machine_availability"), float):
        rep.say(f"this machine online: {fields['machine_availability']:.0%} of the time "
                "(estimate)")
    rep.say(f"account: {account.get('health', '?')}")
    alert = account.get("alert")
    if isinstance(alert, dict):
        since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(alert.get("raised", 0))))
        rep.say(f"[bold]alert[/]: balance {alert.get('level')} since {since}: "
                f"{account.get('health', '')}")


def register(app: typer.Typer) -> None:
    @app.command("status")
    @with_options(quiet=False, password=False)
    def status_cmd(opts: Options) -> None:
        """Show the coordinator, this machine's peer and how much is backed up and lent."""

        rep = opts.reporter()
        cfg = load(opts.config)
        try:
            fields = run(_status(cfg))
        except Unreachable:
            rep.summary(coordinator=cfg.coordinator, coordinator_reachable=False)
            raise
        rep.summary(**fields)
        rep.say(f"coordinator: {cfg.coordinator} (reachable)")
        if not fields["ticket_key_matches"]:
            rep.warn("the coordinator's ticket key differs from the one pinned at init: "
                     "peers will refuse its tickets; check you talk to the right coordinator")
        for key, label in LABELS:
            if key in fields:
                rep.say(f"{label}: {_human(key, fields[key], fields)}")
        _account(rep, fields.get("account"), fields)
        if fields.get("settings_url"):
            rep.say(f"settings page: {fields['settings_url']}")
