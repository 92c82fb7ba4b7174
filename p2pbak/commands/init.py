"""`p2pbak init`: register a user and this machine with a coordinator."""

from __future__ import annotations

from pathlib import Path
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
    save_machine,
)

CoordinatorOpt = Annotated[str, typer.Option(
    "--coordinator", envvar="P2PBAK_COORDINATOR",
    help="Coordinator URL, e.g. http://backup.example.org:8420 ($P2PBAK_COORDINATOR).")]
UserOpt = Annotated[str, typer.Option("--user", help="Your user name on the coordinator.")]
MachineOpt = Annotated[str | None, typer.Option(
    "--machine", help="A name for this machine (default: the host name).")]


async def initialise(url: str, user: str, machine: str, passphrase: str, path: Path) -> dict:
    """Create the user and its master key; the coordinator keeps only the wrapped key."""
    import asyncio

    from p2pbak.datapath import crypto
    from p2pbak.errors import P2pbakError
    from p2pbak.net.api import CoordinatorClient, CoordinatorError

    async with CoordinatorClient(url) as coord:
        health = await coord.health()
        try:
            await coord.salt(user)
        except CoordinatorError as exc:
            if exc.status != 404:
                raise
        else:
            raise P2pbakError(f"user {user!r} already exists on {url}: to use it on this "
                              f"machine run `p2pbak recover --coordinator {url} --user {user}`")
        salt = crypto.new_salt()
        login, keyfile = await asyncio.gather(
            asyncio.to_thread(crypto.login_key, passphrase, user, salt),
            asyncio.to_thread(crypto.wrap_master_key, crypto.new_master_key(), passphrase))
        created = await coord.create_user(user, salt=salt, login_key=login, keyfile=keyfile,
                                          machine=machine)
    return save_machine(path, url, user, machine, created, health)


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(coordinator: CoordinatorOpt, user: UserOpt, machine: MachineOpt = None,
             password_file: PasswordFileOpt = None, password_command: PasswordCommandOpt = None,
             config: ConfigOpt = None, json: JsonOpt = False) -> None:
        """Create your user and this machine on a coordinator (a new master key)."""
        from p2pbak.config import read_passphrase

        rep = reporter(json)
        path = fresh_config_path(config)
        passphrase = read_passphrase(password_file=password_file,
                                     password_command=password_command, confirm=True)
        done = run(initialise(coordinator, user, machine_name(machine), passphrase, path))
        rep.summary(**done)
        rep.say(f"created user [bold]{user}[/] on {coordinator}; config written to {path}\n"
                "Keep your passphrase safe: without it nobody, you included, can restore.")
