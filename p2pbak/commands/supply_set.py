"""`p2pbak supply set`: the caps of what this machine lends (§3.1 sliders)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.caps import cap_text
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.config import load, parse_caps, save
from p2pbak.errors import P2pbakError

SizeOpt = Annotated[str | None, typer.Option(
    "--space", help="Disk space to lend, e.g. 50GB or 1.5TiB; 0 lends none (bandwidth "
    "only), `unlimited` the whole disk.",
    metavar="SIZE")]
UploadOpt = Annotated[str | None, typer.Option(
    "--upload", help="Upload bandwidth to lend, e.g. 1MB/s or 10Mbit/s, or `unlimited`.",
    metavar="RATE")]
DownloadOpt = Annotated[str | None, typer.Option(
    "--download", help="Download bandwidth to lend, e.g. 2MB/s, or `unlimited`.",
    metavar="RATE")]


def caps_dict(supply: Any) -> dict[str, int | None]:
    return {"space": supply.space, "upload": supply.upload, "download": supply.download}


async def _send(cfg: Any) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(cfg) as coord:
        return await coord.set_supply(cfg.supply)


@with_options(password=False)
def supply_set(opts: Options, space: SizeOpt = None, upload: UploadOpt = None,
               download: DownloadOpt = None) -> None:
    """Set the caps on what this machine lends; the peer agent never uses more."""
    rep = opts.reporter()
    cfg = load(opts.config)
    cfg.supply = parse_caps(cfg.supply, space, upload, download)
    save(cfg)  # the running peer agent re-reads it at its next heartbeat
    sent = True
    try:
        answer = run(_send(cfg))
    except P2pbakError as exc:
        sent, answer = False, {}
        rep.warn(f"caps saved in {cfg.path} but not sent to the coordinator ({exc}); "
                 "the peer agent sends them when it next reaches it")
    rep.summary(caps=caps_dict(cfg.supply), config=str(cfg.path), sent=sent,
                peer_known=bool(answer.get("peer_known", False)))
    rep.say(f"space {cap_text(cfg.supply.space, False)}, upload "
            f"{cap_text(cfg.supply.upload, True)}, download "
            f"{cap_text(cfg.supply.download, True)} (saved in {cfg.path})")


def register(app: typer.Typer) -> None:
    groups.supply_app.command("set")(supply_set)
