"""Peer URLs read on a client's hot path: a relayed peer's relay, a pinned peer's pin.

Kept apart from net/relay (the relay server: aiohttp.web) and net/peertls (certificates:
cryptography.x509) so a backup or restore does not import either just to read a URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import aiohttp

RELAY_PREFIX = "/v1/relay"


def relay_base(url: str) -> str:
    """The relay's own URL in a relayed peer's URL ('' if `url` is direct)."""
    where = url.find(RELAY_PREFIX + "/")
    return url[:where] if where >= 0 else ""


def target(url: str) -> tuple[str, aiohttp.Fingerprint | bool]:
    """(the URL to request, aiohttp's `ssl` argument): the pin checked, else the default."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, True
    pin, _, netloc = parts.netloc.rpartition("@")
    bare = urlunsplit(parts._replace(netloc=netloc))
    try:
        raw = bytes.fromhex(pin)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"peer URL {url} pins no SHA-256 certificate fingerprint")
    return bare, aiohttp.Fingerprint(raw)
