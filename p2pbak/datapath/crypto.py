"""Keys and sealing: the master key, its passphrase-wrapped key file, the login key,
keyed chunk ids and AEAD-sealed blobs (docs/formats.md).

The master key is 32 random bytes. It never leaves the machine unwrapped: the key file
holds it sealed (ChaCha20-Poly1305) under a key scrypt derives from the passphrase and a
random salt. The login key, which the coordinator sees (it stores a hash), comes from the
passphrase with a different salt and a different scrypt context, so it tells nothing
about the wrapping key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import blake3
import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from p2pbak.errors import DamagedBlob, P2pbakError, WrongPassphrase

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
SALT_LEN = 16
KEYFILE_VERSION = 1
# scrypt cost: 2^15 x 8 x 1 takes ~32 MiB and ~0.1 s, restic's order of magnitude.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_KEYFILE_AAD = b"p2pbak keyfile v1"
_LOGIN_CONTEXT = b"p2pbak login key v1\0"
_WRAP_CONTEXT = b"p2pbak key wrapping v1\0"


def new_master_key() -> bytes:
    return os.urandom(KEY_LEN)


def new_salt() -> bytes:
    return os.urandom(SALT_LEN)


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p)
    return kdf.derive(passphrase.encode("utf-8"))


def wrap_master_key(master: bytes, passphrase: str) -> bytes:
    """The versioned key file: the master key sealed under a passphrase-derived key."""
    if len(master) != KEY_LEN:
        raise P2pbakError(f"master key must be {KEY_LEN} bytes")
    salt = new_salt()
    wrapping = _scrypt(passphrase, _WRAP_CONTEXT + salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    nonce = os.urandom(NONCE_LEN)
    sealed = ChaCha20Poly1305(wrapping).encrypt(nonce, master, _KEYFILE_AAD)
    return msgpack.packb({"v": KEYFILE_VERSION, "kdf": "scrypt", "N": SCRYPT_N, "r": SCRYPT_R,
                          "p": SCRYPT_P, "salt": salt, "nonce": nonce, "key": sealed})


def unwrap_master_key(keyfile: bytes, passphrase: str) -> bytes:
    """The master key from a key file; WrongPassphrase if the passphrase does not open it."""
    try:
        doc = msgpack.unpackb(keyfile)
        if doc["v"] != KEYFILE_VERSION or doc["kdf"] != "scrypt":
            raise P2pbakError(f"key file version {doc['v']} is not supported; upgrade p2pbak")
        wrapping = _scrypt(passphrase, _WRAP_CONTEXT + doc["salt"], doc["N"], doc["r"], doc["p"])
        nonce, sealed = doc["nonce"], doc["key"]
    except P2pbakError:
        raise
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise P2pbakError(f"the key file is damaged ({type(exc).__name__}); "
                          "run `p2pbak recover` to fetch it again") from None
    try:
        return ChaCha20Poly1305(wrapping).decrypt(nonce, sealed, _KEYFILE_AAD)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase: it does not open this repository's key; "
                              "check it and try again") from None


def login_key(passphrase: str, user: str, salt: bytes) -> bytes:
    """The proof of the passphrase sent to the coordinator on `recover` (32 bytes)."""
    context = _LOGIN_CONTEXT + user.encode("utf-8") + b"\0" + salt
    return _scrypt(passphrase, context, SCRYPT_N, SCRYPT_R, SCRYPT_P)


@dataclass(frozen=True)
class Keys:
    """Sub-keys of one master key, each for one purpose."""

    chunk_id: bytes  # keyed BLAKE3 of chunk plaintext
    blob: bytes  # AEAD key for every blob

    @classmethod
    def derive(cls, master: bytes) -> Keys:
        if len(master) != KEY_LEN:
            raise P2pbakError(f"master key must be {KEY_LEN} bytes")

        def sub(context: str) -> bytes:
            return blake3.blake3(master, derive_key_context=context).digest()

        return cls(chunk_id=sub("p2pbak 2026 chunk id"), blob=sub("p2pbak 2026 blob seal"))

    def chunk_id_of(self, data: bytes | memoryview) -> str:
        return blake3.blake3(data, key=self.chunk_id).hexdigest()


@lru_cache(maxsize=16)
def _cipher(key: bytes) -> ChaCha20Poly1305:
    """One cipher object per key, shared by threads (it keeps no state between calls):
    making one costs more than sealing a small blob."""
    return ChaCha20Poly1305(key)


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes = b"") -> bytes:
    """nonce || ChaCha20-Poly1305(plaintext), random nonce."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + _cipher(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes | memoryview, aad: bytes = b"") -> bytes:
    """The plaintext of a sealed blob; DamagedBlob if it fails authentication."""
    if len(sealed) < NONCE_LEN + TAG_LEN:
        raise DamagedBlob("encrypted blob is truncated")
    try:
        return _cipher(key).decrypt(bytes(sealed[:NONCE_LEN]), bytes(sealed[NONCE_LEN:]), aad)
    except InvalidTag:
        raise DamagedBlob("encrypted blob failed authentication: it is damaged "
                          "or belongs to another repository") from None
