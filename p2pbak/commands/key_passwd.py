"""`p2pbak key passwd`: a new passphrase; the master key is re-wrapped, the old one stops
working (on the coordinator too: `recover` takes only the new one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from p2pbak.client.session import Session
from p2pbak.commands import groups
from p2pbak.commands.common import (
    run,
)
from p2pbak.commands.options import Options, with_options
from p2pbak.config import _prompt, read_passphrase
from p2pbak.errors import P2pbakError


async def change_passphrase(session: Session, new: str) -> dict[str, Any]:
    """Unwrap with the old passphrase, wrap with the new, and send the wrapped key with the
    new login (salt and login key) in one request: both change together or neither does."""
    # imported here, not at the top: keeps CLI start-up fast
    import asyncio

    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.datapath import crypto
    from p2pbak.net.api import CoordinatorClient, b64, unb64

    cfg = session.config
    async with CoordinatorClient.from_config(cfg) as coord:
        old = unb64((await coord.call("GET", "/v1/keyfile")).get("keyfile"), "key file")
        master = await asyncio.to_thread(crypto.unwrap_master_key, old, session.passphrase)
        keyfile = await asyncio.to_thread(crypto.wrap_master_key, master, new)
        salt = crypto.new_salt()
        login = await asyncio.to_thread(crypto.login_key, new, cfg.user, salt)
        await coord.call("PUT", "/v1/keyfile", {"keyfile": b64(keyfile), "salt": b64(salt),
                                                "login_key": b64(login)})
    return {"user": cfg.user}


def _new_passphrase(new_file: Path | None, new_command: str | None) -> str:
    if new_file is None and new_command is None:
        return _prompt(True)  # never the old one's $P2PBAK_PASSWORD_FILE
    return read_passphrase(password_file=new_file, password_command=new_command)


@with_options()
def key_passwd(opts: Options, new_password_file: Annotated[Path | None, typer.Option(
                   "--new-password-file", help="Read the new passphrase from this file "
                   "(default: ask twice on the terminal).", dir_okay=False)] = None,
               new_password_command: Annotated[str | None, typer.Option(
                   "--new-password-command", help="Run this command to get the new "
                   "passphrase.")] = None) -> None:
    """Change the passphrase: the old one (as for every command) unlocks, the new one
    locks from now on; snapshots and data are untouched."""
    rep = opts.reporter()
    session = opts.session()
    new = _new_passphrase(new_password_file, new_password_command)
    if new == session.passphrase:
        raise P2pbakError("the new passphrase is the old one: nothing changed")
    done = run(change_passphrase(session, new))
    rep.summary(**done, changed=True)
    rep.say("passphrase changed: the old one no longer unlocks your backups; use the new "
            "one on every machine (update password files and `p2pbak recover`)")


def register(app: typer.Typer) -> None:
    groups.key_app.command("passwd")(key_passwd)
