"""This machine's identity on a coordinator: a new user (`init`) or a new machine of an
existing user (`recover`), and the config that keeps its credentials."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from p2pbak.config import Config, save
from p2pbak.datapath import crypto
from p2pbak.errors import P2pbakError, WrongPassphrase
from p2pbak.net.api import CoordinatorClient, CoordinatorError


async def initialise(url: str, user: str, machine: str, passphrase: str, path: Path) -> dict:
    """Create the user and its master key; the coordinator keeps only the wrapped key."""
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


async def recover_machine(url: str, user: str, machine: str, passphrase: str,
                          path: Path) -> dict:
    """Prove the passphrase (login key), register this machine, check the key unwraps."""
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


def save_machine(path: Path, url: str, user: str, machine: str, joined: dict[str, Any],
                 health: dict[str, Any]) -> dict[str, Any]:
    """Write this machine's config from the coordinator's answers (to `init` or `recover`);
    the command's summary fields."""

    save(Config(path=path, coordinator=url.rstrip("/"), user=user,
                machine_id=str(joined["machine_id"]), secret=str(joined["secret"]),
                ticket_key=str(health.get("ticket_key", ""))))
    return {"user": user, "machine": machine, "machine_id": joined["machine_id"],
            "coordinator": url, "config": str(path)}
