"""`p2pbak serve`: run the coordinator."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from p2pbak.commands.output import Reporter
from p2pbak.commands.peer_run import parse_listen
from p2pbak.store.db.dialect import location, redact

DEFAULT_LISTEN = "127.0.0.1:8420"


def default_db() -> Path:
    # imported here, not at the top: keeps CLI start-up fast
    import platformdirs

    return platformdirs.user_data_path("p2pbak") / "coordinator.db"


def serve(
    db: str = typer.Option(None, "--db", metavar="PATH|URL",
                           help="SQLite database file (PATH or sqlite:PATH, created if "
                           "missing), or a PostgreSQL URL "
                           "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB. "
                           "Default: coordinator.db in the user data folder."),
    listen: str = typer.Option(DEFAULT_LISTEN, "--listen", help="HOST:PORT to listen on."),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS."),
    tls_key: Path = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    online_window: int = typer.Option(180, "--online-window", min=1,
                                      help="Seconds since a peer's last heartbeat for it to "
                                      "count as online."),
    price_interval: float = typer.Option(86400.0, "--price-interval", min=0.1,
                                         help="Seconds between price updates (the daily "
                                         "price job)."),
    billing_interval: float = typer.Option(3600.0, "--billing-interval", min=0.1,
                                           help="Seconds between storage billing and "
                                           "low-balance checks."),
    max_deficit: str = typer.Option("", "--max-deficit",
                                    help="Largest debt in credits (e.g. 10 or 0.5) before "
                                    "any account's backups freeze. Default: 14 days of the "
                                    "user's storage bill, at least 10, once the account has "
                                    "been paid for proven work; before that, a day of what "
                                    "its online peer is counted for (0 without a peer)."),
    price_rule: str = typer.Option("safe", "--price-rule",
                                   help="Price update: safe (safeguarded secant, damped when "
                                   "users react late) or paper (Definition 4 as printed). "
                                   "Used from the first price update on."),
    smtp_host: str = typer.Option("", "--smtp-host", help="Mail low-balance alerts (to "
                                  "the user's `init --email`/`p2pbak email` address, else a "
                                  "user name that is an address) via this server."),
    smtp_port: int = typer.Option(25, "--smtp-port", min=1, max=65535,
                                  help="Port of --smtp-host."),
    smtp_from: str = typer.Option("", "--smtp-from", help="Sender address of alert mails."),
    checker_interval: float = typer.Option(300.0, "--checker-interval", min=0.1,
                                           help="Seconds between repair checker runs."),
    departure_timeout: int = typer.Option(72 * 3600, "--departure-timeout", min=1,
                                          help="Seconds without a heartbeat after which a "
                                          "peer's fragments count as lost and are repaired."),
    audit_interval: float = typer.Option(300.0, "--audit-interval", min=0.1,
                                         help="Seconds between audit rounds (one random "
                                         "fragment of each online peer)."),
    availability_window: int = typer.Option(7 * 86400, "--availability-window", min=60,
                                            help="Seconds of heartbeat history behind each "
                                            "peer's availability estimate."),
    relay: bool = typer.Option(False, "--relay", help="Relay for peers behind NAT when no "
                               "peer offers to (the relay of last resort)."),
    json: bool = typer.Option(False, "--json", help="Start/stop lines as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No start/stop lines."),
) -> None:
    """Run the coordinator: metadata, tickets and placement for a grid of peers."""
    # imported here, not at the top: keeps CLI start-up fast
    import asyncio

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.coordinator.accounts import parse_credits
    from p2pbak.coordinator.http.server import ServeOptions
    from p2pbak.coordinator.http.server import serve as run
    from p2pbak.coordinator.model import MarketSettings, RepairSettings
    from p2pbak.coordinator.prices import check_rule

    out = Reporter(json=json, quiet=quiet)
    host, port = parse_listen(listen, DEFAULT_LISTEN, port_zero=True)
    path = location(db or "", default_db())
    logging.basicConfig(level=logging.INFO, format="p2pbak serve: %(levelname)s %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    market = MarketSettings(price_interval=price_interval, billing_interval=billing_interval,
                            max_deficit=parse_credits(max_deficit) if max_deficit else None,
                            rule=check_rule(price_rule),
                            smtp_host=smtp_host, smtp_port=smtp_port, smtp_from=smtp_from)
    opts = ServeOptions(db=path, host=host, port=port, online_window=online_window,
                        tls_cert=tls_cert, tls_key=tls_key, market=market, relay=relay,
                        repair=RepairSettings(checker_interval, departure_timeout,
                                              audit_interval, availability_window))

    listening: list[str] = []

    def started(url: str) -> None:
        listening.append(url)
        out.status(action="start", url=url, db=redact(str(path)))
        if not json and not quiet:
            print(f"p2pbak serve: listening on {url} (database {redact(str(path))})",
                  file=sys.stderr,
                  flush=True)

    def stopped() -> None:
        out.status(action="stop", url=listening[0] if listening else f"{host}:{port}")
        if not json and not quiet:
            print("p2pbak serve: stopped, database closed", file=sys.stderr, flush=True)

    asyncio.run(run(opts, started, stopped))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
