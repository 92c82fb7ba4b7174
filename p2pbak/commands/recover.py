"""`p2pbak recover`: get access back on a new machine with the user name and passphrase."""

from __future__ import annotations

import typer

from p2pbak.commands.common import (
    fresh_config_path,
    machine_name,
    run,
)
from p2pbak.commands.init import CoordinatorOpt, MachineOpt, UserOpt
from p2pbak.commands.options import Options, with_options
from p2pbak.config import read_passphrase


def register(app: typer.Typer) -> None:
    @app.command("recover")
    @with_options(quiet=False)
    def recover(opts: Options, coordinator: CoordinatorOpt, user: UserOpt,
                machine: MachineOpt = None) -> None:
        """On a new machine: regain access to your backups with user name and passphrase."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.client.identity import recover_machine

        rep = opts.reporter()
        path = fresh_config_path(opts.config)
        passphrase = read_passphrase(password_file=opts.password_file,
                                     password_command=opts.password_command)
        done = run(recover_machine(coordinator, user, machine_name(machine), passphrase, path))
        rep.summary(**done)
        rep.say(f"this machine now has access to {user}'s backups; config written to {path}")
