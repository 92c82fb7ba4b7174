"""`p2pbak init`: register a user and this machine with a coordinator."""

from __future__ import annotations

from typing import Annotated

import typer

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    fresh_config_path,
    machine_name,
    reporter,
    run,
)
from p2pbak.config import read_passphrase

CoordinatorOpt = Annotated[str, typer.Option(
    "--coordinator", envvar="P2PBAK_COORDINATOR",
    help="Coordinator URL, e.g. http://backup.example.org:8420 ($P2PBAK_COORDINATOR).")]
UserOpt = Annotated[str, typer.Option("--user", help="Your user name on the coordinator.")]
MachineOpt = Annotated[str | None, typer.Option(
    "--machine", help="A name for this machine (default: the host name).")]


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(coordinator: CoordinatorOpt, user: UserOpt, machine: MachineOpt = None,
             password_file: PasswordFileOpt = None, password_command: PasswordCommandOpt = None,
             config: ConfigOpt = None, json: JsonOpt = False) -> None:
        """Create your user and this machine on a coordinator (a new master key)."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.client.identity import initialise

        rep = reporter(json)
        path = fresh_config_path(config)
        passphrase = read_passphrase(password_file=password_file,
                                     password_command=password_command, confirm=True)
        done = run(initialise(coordinator, user, machine_name(machine), passphrase, path))
        rep.summary(**done)
        rep.say(f"created user [bold]{user}[/] on {coordinator}; config written to {path}\n"
                "Keep your passphrase safe: without it nobody, you included, can restore.")
