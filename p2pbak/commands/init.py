"""`p2pbak init`: register a user and this machine with a coordinator."""

from __future__ import annotations

from typing import Annotated

import typer

from p2pbak.addresses import checked
from p2pbak.commands.common import (
    fresh_config_path,
    machine_name,
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.config import read_passphrase

CoordinatorOpt = Annotated[list[str], typer.Option(
    "--coordinator", envvar="P2PBAK_COORDINATOR",
    help="Coordinator URL, e.g. http://backup.example.org:8420 ($P2PBAK_COORDINATOR). "
         "Several coordinators on one database: repeat the option or separate the URLs "
         "with commas; the others are tried in turn when one is down.")]
UserOpt = Annotated[str, typer.Option("--user", help="Your user name on the coordinator.")]
MachineOpt = Annotated[str | None, typer.Option(
    "--machine", help="A name for this machine (default: the host name).")]
EmailOpt = Annotated[str | None, typer.Option(
    "--email", metavar="ADDRESS",
    help="Where the coordinator mails low-balance alerts (default: the user name, if it is "
    "an address); change it later with `p2pbak email`.")]


def register(app: typer.Typer) -> None:
    @app.command("init")
    @with_options(quiet=False)
    def init(opts: Options, coordinator: CoordinatorOpt, user: UserOpt,
             machine: MachineOpt = None, email: EmailOpt = None) -> None:
        """Create your user and this machine on a coordinator (a new master key)."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.client.identity import initialise

        rep = opts.reporter()
        if email is not None:
            checked(email)  # before the passphrase is asked for
        path = fresh_config_path(opts.config)
        passphrase = read_passphrase(password_file=opts.password_file,
                                     password_command=opts.password_command, confirm=True)
        done = run(initialise(coordinator, user, machine_name(machine), passphrase, path,
                              email))
        rep.summary(**done)
        rep.say(f"created user [bold]{user}[/] on {done['coordinator']}; config written to {path}\n"
                "Keep your passphrase safe: without it nobody, you included, can restore.")
