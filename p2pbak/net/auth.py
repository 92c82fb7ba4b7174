"""Machine tokens and login keys: only hashes are stored, every check is constant-time.

A machine token is `<machine_id>.<secret>` (both hex; the secret is 32 random bytes) sent as
`Authorization: Bearer <token>`. The login key is the client's scrypt output from the
passphrase, already slow to guess, so a keyed BLAKE3 with a per-user key is enough here.
"""

from __future__ import annotations

import hmac
import secrets

import blake3
from aiohttp import web

from p2pbak.net.validate import fail
from p2pbak.store import coordinator_users as users
from p2pbak.store.coordinator_db import Database

SECRET_BYTES = 32
_DUMMY_HASH = bytes(32)  # compared against when the machine id is unknown


def new_machine_id() -> str:
    return secrets.token_hex(16)


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def hash_secret(secret: str) -> bytes:
    return blake3.blake3(secret.encode("utf-8", "replace")).digest()


def new_login(salt: bytes, login_key: bytes) -> users.Login:
    """The stored form of a login key: a fresh per-user hash key and the keyed hash."""
    key = secrets.token_bytes(32)
    return users.Login(salt=salt, login_hash=hash_login(key, login_key), login_hash_key=key)


def hash_login(key: bytes, login_key: bytes) -> bytes:
    return blake3.blake3(login_key, key=key).digest()


def login_matches(stored: users.Login, login_key: bytes) -> bool:
    return hmac.compare_digest(hash_login(stored.login_hash_key, login_key), stored.login_hash)


def token(machine_id: str, secret: str) -> str:
    return f"{machine_id}.{secret}"


def _hex(text: str) -> bool:
    return 0 < len(text) <= 128 and all(c in "0123456789abcdef" for c in text)


def _bearer(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    machine_id, dot, secret = value.strip().partition(".")
    # aiohttp hands non-UTF-8 header bytes on as surrogates: refuse anything not hex here,
    # before the id reaches the database or the secret a hash
    if scheme.lower() != "bearer" or not dot or not _hex(machine_id) or not _hex(secret):
        fail(401, "missing machine token: send 'Authorization: Bearer <machine_id>.<secret>'"
                  " (run `p2pbak init` or `p2pbak recover` to get one)")
    return machine_id, secret


async def authenticate(db: Database, request: web.Request) -> users.Machine:
    """The calling machine, or 401 for a missing or wrong token."""
    machine_id, secret = _bearer(request)
    found = await users.machine(db, machine_id) if len(machine_id) <= 64 else None
    expected = found.secret_hash if found is not None else _DUMMY_HASH
    ok = hmac.compare_digest(hash_secret(secret), expected)
    if found is None or not ok:
        fail(401, "wrong machine token: run `p2pbak recover` to register this machine again")
    return found
