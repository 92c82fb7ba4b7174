"""Direct peer links over TLS, each peer's certificate pinned by the coordinator.

A peer that listens beyond loopback serves HTTPS with a self-signed certificate (made on first
start, kept in its storage folder). The SHA-256 of that certificate goes into the URL the
coordinator dials back and records, as the URL's user part:

    https://{sha256 hex}@198.18.0.1:8601

so whoever gets a peer's URL from the coordinator also gets its pin, as Tahoe-LAFS pins a
storage server's key in its fURL. Clients connect with aiohttp's `Fingerprint` check in place
of a CA: a machine presenting any other certificate is refused before a byte of a ticket or a
fragment is sent. Peers on loopback (test grids, the demo) keep plain HTTP.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_FILE, KEY_FILE = "tls.crt", "tls.key"
VALID_DAYS = 3650  # the pin, not the dates, is what clients check


def wants_tls(host: str) -> bool:
    """Beyond loopback a peer speaks TLS only."""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host not in ("localhost",)


def load_or_create(folder: Path) -> tuple[ssl.SSLContext, str]:
    """This peer's server context and its certificate's pin (SHA-256 hex)."""
    cert, key = folder / CERT_FILE, folder / KEY_FILE
    if not (cert.exists() and key.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        _create(cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, fingerprint(cert.read_bytes())


def fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _create(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pbak peer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def pinned(url: str, pin: str) -> str:
    """`url` (https://host:port...) with `pin` as its user part."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{pin}@{parts.netloc.rsplit('@', 1)[-1]}"))
