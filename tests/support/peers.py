"""The real peer fragment server in-process, with a ticket key the test holds."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import blake3
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak.config import Supply
from p2pbak.localgrid.grid import free_port
from p2pbak.net import peertls, tickets
from p2pbak.peer.server import STATE, PeerState, make_app
from p2pbak.store.fragments import FragmentStore

PEER_ID = "peer-under-test"
CLIENT_ID = "consumer"


@dataclass
class Served:
    url: str
    key: Ed25519PrivateKey
    store: FragmentStore
    state: PeerState

    def ticket(self, op: str, fid: str, size: int = 0, *, to: str = PEER_ID,
               ttl: int = 600, key: Ed25519PrivateKey | None = None) -> str:
        return tickets.issue(key or self.key, op=op, fragment=fid, size=size, from_=CLIENT_ID,
                             to=to, ttl=ttl)


@contextlib.asynccontextmanager
async def serve_peer(root: Path, key: Ed25519PrivateKey | None = None,
                     caps: Supply | None = None, tls: Path | None = None,
                     ) -> AsyncIterator[Served]:
    """The server on 127.0.0.1; with `tls` (a folder for its certificate) over TLS, its URL
    pinning the certificate as a peer's beyond loopback does (net/peertls.py)."""
    key = key or Ed25519PrivateKey.generate()
    store = FragmentStore(root).open()
    app = make_app(store, peer_id=PEER_ID, ticket_key=key.public_key(), caps=caps)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    context, pin = peertls.load_or_create(tls) if tls is not None else (None, "")
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    url = peertls.pinned(f"https://127.0.0.1:{port}", pin) if pin else \
        f"http://127.0.0.1:{port}"
    try:
        yield Served(url, key, store, app[STATE])
    finally:
        await runner.cleanup()
        store.close()


def fragment(size: int = 3000, seed: bytes = b"") -> tuple[str, bytes]:
    data = (seed + os.urandom(size))[:size] if seed else os.urandom(size)
    return blake3.blake3(data).hexdigest(), data


def stored_files(root: Path) -> list[Path]:
    """Every file under the fragment folder (fragments and any temp file)."""
    return sorted(p for p in (root / "fragments").rglob("*") if p.is_file())
