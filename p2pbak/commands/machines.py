"""`p2pbak machines list` and `p2pbak machines revoke ID`: a stolen laptop loses access."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

import typer

from p2pbak.commands import groups
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.config import load


async def _call(config: Any, method: str, path: str) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(load(config)) as coord:
        return await coord.call(method, quote(path), {} if method == "POST" else None)


def _state(m: dict[str, Any]) -> str:
    if m["revoked"]:
        return "revoked"
    return f"peer {m['peer_state']}" if m["peer_state"] else "no peer"


@with_options(quiet=False, password=False)
def machines_list(opts: Options) -> None:
    """List your machines: id, name, when added, whether revoked, and its peer's state."""

    # imported here, not at the top: keeps CLI start-up fast
    from rich.markup import escape

    rep = opts.reporter()
    found = run(_call(opts.config, "GET", "/v1/machines"))["machines"]
    for m in found:
        rep.emit("machine", **m)
        added = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(m["created"])))
        rep.say(escape(f"{m['id']}  {m['name']:<16} added {added} UTC  {_state(m)}"
                       + ("  (this machine)" if m["this"] else "")))
    rep.summary(machines=len(found))


@with_options(password=False)
def machines_revoke(opts: Options, machine_id: Annotated[str, typer.Argument(
                        help="The machine's id, from `p2pbak machines list`.",
                        metavar="ID")]) -> None:
    """Revoke a machine: its next request is refused and its peer's fragments are repaired
    elsewhere. Change the passphrase too (`p2pbak key passwd`) if it may be known."""
    rep = opts.reporter()
    run(_call(opts.config, "POST", f"/v1/machines/{machine_id}/revoke"))
    rep.summary(machine_id=machine_id, revoked=True)
    rep.say(f"machine {machine_id} revoked: the coordinator refuses it from now on")


def register(app: typer.Typer) -> None:
    groups.machines_app.command("list")(machines_list)
    groups.machines_app.command("revoke")(machines_revoke)
