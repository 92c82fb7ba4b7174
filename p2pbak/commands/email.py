"""`p2pbak email`: where the coordinator mails this user's low-balance alerts.

A command of its own, not a `supply set` option: the address belongs to the user's account
on the coordinator (every machine of the user sees it), while supply caps are this machine's
and live in its config file. No passphrase: the machine's credentials are enough."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from p2pbak.addresses import checked
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.config import load
from p2pbak.errors import P2pbakError


async def _email(cfg: Any, address: str | None, change: bool) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(cfg) as coord:
        return await (coord.set_email(address) if change else coord.email())


def register(app: typer.Typer) -> None:
    @app.command("email")
    @with_options(password=False)
    def email_cmd(opts: Options,
                  address: Annotated[str | None, typer.Argument(
                      help="The new address; without one, show the current one.",
                      metavar="ADDRESS")] = None,
                  clear: Annotated[bool, typer.Option(
                      "--clear", help="Forget the address given (alerts then go to the user "
                      "name if it is an address, else nowhere).")] = False) -> None:
        """Show or change where low-balance alerts are mailed (set first by `init --email`)."""
        if address is not None and clear:
            raise P2pbakError("give an ADDRESS or --clear, not both")
        if address is not None:
            checked(address)
        rep, change = opts.reporter(), address is not None or clear
        answer = run(_email(load(opts.config), address, change))
        rep.summary(email=answer.get("email"), alerts_to=answer.get("alerts_to"),
                    changed=change)
        to = answer.get("alerts_to")
        rep.say(f"low-balance alerts go to {to}" if to else
                "no address for low-balance alerts: set one with `p2pbak email ADDRESS`")
