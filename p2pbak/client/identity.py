"""This machine's identity on a coordinator: a new user (`init`) or a new machine of an
existing user (`recover`), and the config that keeps its credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pbak.config import Config, save, split_urls
from p2pbak.datapath import crypto
from p2pbak.errors import P2pbakError, WrongPassphrase
from p2pbak.net.api import CoordinatorClient, CoordinatorError


async def initialise(urls: str | Sequence[str], user: str, machine: str, passphrase: str,
                     path: Path, email: str | None = None) -> dict:
    """Create the user and its master key; the coordinator keeps only the wrapped key.
    `urls`: the coordinator's URLs (one, or several coordinators on one database);
    `email`: where low-balance alerts go."""
    async with CoordinatorClient(urls) as coord:
        health = await coord.health()
        url = coord.base_url  # the one that answered
        try:
            await coord.salt(user)
        except CoordinatorError as exc:
            if exc.status != 404:
                raise
        else:
            every = ",".join(coord.urls)
            raise P2pbakError(f"user {user!r} already exists on {url}: to use it on this "
                              f"machine run `p2pbak recover --coordinator {every} --user {user}`")
        salt = crypto.new_salt()
        login, keyfile = await asyncio.gather(
            asyncio.to_thread(crypto.login_key, passphrase, user, salt),
            asyncio.to_thread(crypto.wrap_master_key, crypto.new_master_key(), passphrase))
        created = await coord.create_user(user, salt=salt, login_key=login, keyfile=keyfile,
                                          machine=machine, email=email)
    done = save_machine(path, coord.urls, user, machine, created, health)
    return {**done, "email": email} if email else done


async def recover_machine(urls: str | Sequence[str], user: str, machine: str,
                          passphrase: str, path: Path) -> dict:
    """Prove the passphrase (login key), register this machine, check the key unwraps."""
    async with CoordinatorClient(urls) as coord:
        health = await coord.health()
        url = coord.base_url  # the one that answered
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
    return save_machine(path, coord.urls, user, machine, got, health)


def save_machine(path: Path, urls: str | Sequence[str], user: str, machine: str,
                 joined: dict[str, Any], health: dict[str, Any]) -> dict[str, Any]:
    """Write this machine's config from the coordinator's answers (to `init` or `recover`);
    the command's summary fields."""
    every = split_urls(urls)
    save(Config(path=path, coordinator=every[0], user=user,
                machine_id=str(joined["machine_id"]), secret=str(joined["secret"]),
                ticket_key=str(health.get("ticket_key", "")),
                coordinators=tuple(every) if len(every) > 1 else ()))
    return {"user": user, "machine": machine, "machine_id": joined["machine_id"],
            "coordinator": every[0], "coordinators": every, "config": str(path)}
