"""Sealed requests: what a relay carries for a peer behind NAT is ciphertext, end to end.

A relayed peer has a static X25519 link key (in its storage folder) and puts the public half
in the URL it announces: `{relay}/v1/relay/{machine_id}~{public key hex}`. The coordinator
records that URL for the authenticated machine and hands it out, so the key is pinned by the
coordinator, as Tahoe-LAFS pins storage servers' keys in their fURLs. A client then sends
each request sealed: `POST {url}/sealed` whose body is

    ephemeral X25519 public key (32) | nonce (12) | ChaCha20-Poly1305(request)

with the keys from HKDF-SHA256 over the X25519 shared secret; request = u32 length, a JSON
head {"method", "path", "headers"}, the body. The answer comes back sealed under the
response key: nonce | ChaCha20-Poly1305(u32 length, {"status", "headers"}, body). A relay
sees neither tickets nor fragment ids nor bytes; a peer without the pinned key cannot open
the request nor forge an answer, so the client refuses it.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pbak.errors import SealError

SEALED_PATH = "/sealed"
KEY_MARK = "~"  # between the machine id and the link key in a relayed URL
KEY_FILE = "link.key"
OVERHEAD = 64 * 1024  # room for the sealed head and tag around a body
_INFO = b"p2pbak sealed request v1"


@dataclass(frozen=True)
class Opened:
    head: dict[str, Any]
    body: bytes
    response_key: bytes


def public_hex(key: X25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def load_or_create(folder: Path) -> X25519PrivateKey:
    """This peer's link key, created (mode 0600) on first use."""
    path = folder / KEY_FILE
    try:
        return X25519PrivateKey.from_private_bytes(path.read_bytes())
    except FileNotFoundError:
        key = X25519PrivateKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes_raw())
        return key


def url_key(url: str) -> str:
    """The link key pinned in a relayed peer's URL, '' if there is none."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    _, mark, key = last.partition(KEY_MARK)
    return key if mark and len(key) == 64 else ""


def _keys(shared: bytes) -> tuple[bytes, bytes]:
    both = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(shared)
    return both[:32], both[32:]


def _pack(head: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(head).encode()
    return struct.pack("!I", len(raw)) + raw + body


def _unpack(plain: bytes) -> tuple[dict[str, Any], bytes]:
    if len(plain) < 4:
        raise SealError("sealed message too short")
    (n,) = struct.unpack_from("!I", plain)
    try:
        head = json.loads(plain[4:4 + n])
    except ValueError:
        raise SealError("sealed head is not JSON") from None
    if not isinstance(head, dict):
        raise SealError("sealed head is not an object")
    return head, plain[4 + n:]


def seal_request(peer_key_hex: str, head: dict[str, Any], body: bytes) -> tuple[bytes, bytes]:
    """→ (the sealed request, the key its answer will be sealed with)."""
    try:
        peer = X25519PublicKey.from_public_bytes(bytes.fromhex(peer_key_hex))
    except ValueError:
        raise SealError("malformed link key in the peer's URL") from None
    eph = X25519PrivateKey.generate()
    req_key, resp_key = _keys(eph.exchange(peer))
    nonce = os.urandom(12)
    sealed = ChaCha20Poly1305(req_key).encrypt(nonce, _pack(head, body), None)
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return eph_pub + nonce + sealed, resp_key


def open_request(key: X25519PrivateKey, blob: bytes) -> Opened:
    if len(blob) < 32 + 12 + 16:
        raise SealError("sealed request too short")
    req_key, resp_key = _keys(key.exchange(X25519PublicKey.from_public_bytes(blob[:32])))
    try:
        plain = ChaCha20Poly1305(req_key).decrypt(blob[32:44], blob[44:], None)
    except InvalidTag:
        raise SealError("the request is not sealed for this peer's link key") from None
    head, body = _unpack(plain)
    return Opened(head, body, resp_key)


def seal_response(response_key: bytes, head: dict[str, Any], body: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + ChaCha20Poly1305(response_key).encrypt(nonce, _pack(head, body), None)


def open_response(response_key: bytes, blob: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        plain = ChaCha20Poly1305(response_key).decrypt(blob[:12], blob[12:], None)
    except (InvalidTag, ValueError):
        raise SealError("the answer was not sealed with the peer's pinned link key") from None
    return _unpack(plain)
