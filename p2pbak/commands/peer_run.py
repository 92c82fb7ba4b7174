"""`p2pbak peer run`: the long-running agent that stores other users' fragments."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import typer

from p2pbak.commands import groups
from p2pbak.commands.output import Reporter
from p2pbak.config import config_path, parse_rate
from p2pbak.errors import P2pbakError

DEFAULT_LISTEN = "127.0.0.1:8421"


def parse_listen(text: str, example: str = DEFAULT_LISTEN, *,
                 port_zero: bool = False) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' → (host, port). Port 0 (any free port) only if `port_zero`:
    the coordinator reports the port it got, a peer must advertise its own."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    lowest = 0 if port_zero else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise P2pbakError(f"cannot read --listen {text!r}: write it as HOST:PORT, "
                          f"e.g. {example}")
    return host, int(port)


class _ToReporter(logging.Handler):
    """Agent log lines, time-stamped, as text or JSON status lines; warnings even when quiet."""
    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        text = record.getMessage()
        if self.reporter.json:
            kind = "error" if record.levelno >= logging.WARNING else "status"
            extra = {"fatal": False} if kind == "error" else {"event": "log"}
            self.reporter.emit(kind, time=stamp, message=text, **extra)
        elif record.levelno >= logging.WARNING:
            self.reporter.warn(f"{stamp} {text}")
        elif not self.reporter.quiet:
            self.reporter.out.print(f"{stamp} {text}", markup=False)


def run(
    storage: Path = typer.Option(..., "--storage", help="Folder for other users' fragments."),
    listen: str = typer.Option(DEFAULT_LISTEN, "--listen", help="HOST:PORT to serve on."),
    advertise: str = typer.Option("", "--advertise",
                                  help="URL other peers use to reach this agent (default: "
                                       "found by the coordinator dialling back; behind NAT, "
                                       "through a relay)."),
    relay: bool = typer.Option(False, "--relay", help="Relay for peers behind NAT while "
                               "this one is reachable."),
    relay_rate: str = typer.Option("0", "--relay-rate", help="Bandwidth cap on what this "
                                   "peer relays, e.g. 1MB/s (0: no cap)."),
    no_port_mapping: bool = typer.Option(False, "--no-port-mapping",
                                         help="Do not ask the router (UPnP, NAT-PMP) to forward "
                                              "a port to this peer."),
    heartbeat_interval: float = typer.Option(60.0, "--heartbeat-interval", min=0.1,
                                             help="Seconds between heartbeats."),
    config: Path | None = typer.Option(None, "--config", help="Config file (default: "
                                       "$P2PBAK_CONFIG, else the user config folder)."),
    settings_port: int = typer.Option(0, "--settings-port", min=0, max=65535,
                                      help="Port of the settings page on 127.0.0.1 "
                                           "(0: any free one)."),
    no_settings_page: bool = typer.Option(False, "--no-settings-page",
                                          help="Do not serve the settings page."),
    json: bool = typer.Option(False, "--json", help="JSON lines on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only problems."),
) -> None:
    """Serve fragments to other peers under this machine's caps until stopped (SIGTERM)."""
    # imported here, not at the top: keeps CLI start-up fast
    import asyncio

    # imported here, not at the top: keeps CLI start-up fast
    from rich.console import Console

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.serving import stop_event
    from p2pbak.peer.agent import Agent
    from p2pbak.peer.deletes import DeleteList
    from p2pbak.peer.receipts import RECEIPTS_FILE, ReceiptBook
    from p2pbak.peer.tasks import task_worker

    # a log, not a page: one line per event however long
    reporter = Reporter(json=json, quiet=quiet, out=Console(highlight=False, soft_wrap=True),
                        err=Console(stderr=True, highlight=False, soft_wrap=True))
    host, port = parse_listen(listen)
    agent = Agent(config_path(config), storage.expanduser(), host, port,
                  advertise.rstrip("/"), heartbeat_interval, relay=relay,
                  relay_rate=parse_rate(relay_rate), port_mapping=not no_port_mapping)
    # tickets honoured, handed in to be paid with each heartbeat
    receipts = ReceiptBook(agent.storage / RECEIPTS_FILE)
    agent.served_hooks.append(receipts.served)
    agent.heartbeat_hooks.append(receipts.heartbeat_hook)
    agent.workers.append(task_worker(heartbeat_interval))  # repairs, audits, tests
    agent.heartbeat_hooks.append(DeleteList().heartbeat_hook)  # garbage off this disk
    handler = _ToReporter(reporter)
    logger = logging.getLogger("p2pbak")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def main() -> None:
        stop = stop_event()
        if no_settings_page:
            await agent.run(stop)
            return
        async with _settings_page(config_path(config), settings_port, reporter):
            await agent.run(stop)

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
    reporter.summary(stopped=True, url=agent.url())
    reporter.say("peer agent stopped")


@asynccontextmanager
async def _settings_page(cfg_file: Path, port: int, reporter: Reporter) -> AsyncIterator[str]:
    """`p2pbak ui`'s page, served beside the agent; `status` finds its URL in a file."""
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.ui.server import Page, publish, start, withdraw

    runner, url = await start(Page(cfg_file), port)
    publish(cfg_file, url)
    reporter.emit("status", event="settings", settings_url=url)
    reporter.say(f"settings page: {url}")
    try:
        yield url
    finally:
        withdraw(cfg_file, url)
        await runner.cleanup()


def register(app: typer.Typer) -> None:
    groups.peer_app.command("run")(run)
