"""`p2pbak recover`: get access back on a new machine with the user name and passphrase."""

from __future__ import annotations

from pathlib import Path

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
from p2pbak.commands.init import CoordinatorOpt, MachineOpt, UserOpt


async def recover_machine(url: str, user: str, machine: str, passphrase: str,
                          path: Path) -> dict:
    """Prove the passphrase (login key), register this machine, check the key unwraps."""
    import asyncio

    from p2pbak.datapath import crypto
    from p2pbak.errors import P2pbakError, WrongPassphrase
    from p2pbak.net.api import CoordinatorClient, CoordinatorError

    async with CoordinatorClient(url) as coord:
        health = await coord.health()
        try:
            salt = await coord.salt(user)
        except CoordinatorError as exc:
            if exc.status == 404:
                raise P2pbakError(f"no user {user!r} on {url}: check the name, or create it "
                                  "with `p2pbak init`") from None
            raise
        login = await asyncio.to_thread(crypto.login_key, passphrase, user, salt)
        try:
            got = await coord.add_machine(user, login_key=login, machine=machine)
        except CoordinatorError as exc:
            if exc.status == 403:
                raise WrongPassphrase(f"wrong passphrase for user {user!r}: nothing was "
                                      "changed, try again") from None
            raise
    await asyncio.to_thread(crypto.unwrap_master_key, got["keyfile"], passphrase)
    return save_machine(path, url, user, machine, got, health)


def register(app: typer.Typer) -> None:
    @app.command("recover")
    def recover(coordinator: CoordinatorOpt, user: UserOpt, machine: MachineOpt = None,
                password_file: PasswordFileOpt = None,
                password_command: PasswordCommandOpt = None, config: ConfigOpt = None,
                json: JsonOpt = False) -> None:
        """On a new machine: regain access to your backups with user name and passphrase."""
        from p2pbak.config import read_passphrase

        rep = reporter(json)
        path = fresh_config_path(config)
        passphrase = read_passphrase(password_file=password_file,
                                     password_command=password_command)
        done = run(recover_machine(coordinator, user, machine_name(machine), passphrase, path))
        rep.summary(**done)
        rep.say(f"this machine now has access to {user}'s backups; config written to {path}")
