"""Machine secrets and login keys as the coordinator keeps them: only hashes are stored,
every check is constant-time.

The login key is the client's scrypt output from the passphrase, already slow to guess, so
a keyed BLAKE3 with a per-user key is enough here.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

import blake3

from p2pbak.store.db.users import Login, Machine

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

SECRET_BYTES = 32
_DUMMY_HASH = bytes(32)  # compared against when the machine id is unknown


def new_machine_id() -> str:
    return secrets.token_hex(16)


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def hash_secret(secret: str) -> bytes:
    return blake3.blake3(secret.encode("utf-8", "replace")).digest()


def new_login(salt: bytes, login_key: bytes) -> Login:
    """The stored form of a login key: a fresh per-user hash key and the keyed hash."""
    key = secrets.token_bytes(32)
    return Login(salt=salt, login_hash=hash_login(key, login_key), login_hash_key=key)


def hash_login(key: bytes, login_key: bytes) -> bytes:
    return blake3.blake3(login_key, key=key).digest()


def login_matches(stored: Login, login_key: bytes) -> bool:
    return hmac.compare_digest(hash_login(stored.login_hash_key, login_key), stored.login_hash)


async def authenticate(coord: Coordinator, machine_id: str, secret: str) -> Machine | None:
    """The machine this token belongs to, or None for an unknown id or a wrong secret."""
    found = await coord.machines.add(machine_id) if len(machine_id) <= 64 else None
    expected = found.secret_hash if found is not None else _DUMMY_HASH
    ok = hmac.compare_digest(hash_secret(secret), expected)
    return found if found is not None and ok else None
