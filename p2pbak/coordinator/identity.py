"""Users, their machines and the wrapped master key: what the identity routes ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2pbak.coordinator import credentials
from p2pbak.errors import UnknownUser, WrongLogin
from p2pbak.store.db import users
from p2pbak.store.db.users import Machine

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

__all__ = ["Enrolled", "Machine", "UnknownUser", "WrongLogin", "add_machine", "create_user",
           "keyfile", "salt", "set_keyfile"]


@dataclass(frozen=True)
class Enrolled:
    """A new machine's credentials, as handed to it once (the secret is never stored)."""

    machine_id: str
    secret: str
    keyfile: bytes = b""


async def salt(coord: Coordinator, user: str) -> bytes | None:
    found = await users.login(coord.db, user)
    return None if found is None else found.salt


async def create_user(coord: Coordinator, *, user: str, salt: bytes, login_key: bytes,
                      keyfile: bytes, machine_name: str, email: str | None = None) -> Enrolled:
    """The user and its first machine (and the address for alerts, if given); Conflict if
    the name is taken."""
    login = credentials.new_login(salt, login_key)
    machine_id, secret = credentials.new_machine_id(), credentials.new_secret()
    await users.create_user(coord.db, user=user, salt=login.salt, login_hash=login.login_hash,
                            login_hash_key=login.login_hash_key, keyfile=keyfile,
                            machine_id=machine_id, machine_name=machine_name,
                            secret_hash=credentials.hash_secret(secret), email=email)
    return Enrolled(machine_id, secret)


async def email(coord: Coordinator, user: str) -> str | None:
    """The address the user gave for alerts, if any."""
    return await users.email(coord.db, user)


async def add_machine(coord: Coordinator, *, user: str, login_key: bytes,
                      machine_name: str) -> Enrolled:
    """Recover: a new machine for an existing user, proven by the login key."""
    stored = await users.login(coord.db, user)
    if stored is None:
        raise UnknownUser(user)
    if not credentials.login_matches(stored, login_key):
        raise WrongLogin(user)
    machine_id, secret = credentials.new_machine_id(), credentials.new_secret()
    await users.add_machine(coord.db, user=user, machine_id=machine_id,
                            machine_name=machine_name,
                            secret_hash=credentials.hash_secret(secret))
    return Enrolled(machine_id, secret, await keyfile(coord, user))


async def keyfile(coord: Coordinator, user: str) -> bytes:
    return await users.keyfile(coord.db, user) or b""


async def set_keyfile(coord: Coordinator, user: str, blob: bytes,
                      salt: bytes | None = None, login_key: bytes | None = None) -> None:
    """A new wrapped key; with salt and login key the passphrase changed too."""
    login = None if salt is None or login_key is None else credentials.new_login(
        salt, login_key)
    await users.set_keyfile(coord.db, user, blob, login)
