"""Direct peer links over TLS with the certificate pinned in the peer's URL (net/peertls.py):
a real fragment server on TLS, the real PeerClient."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from p2pbak.net import peertls, urls
from p2pbak.net.api import PeerClient, PeerError
from tests.support.peers import fragment, serve_peer


def test_transfers_run_over_tls_to_the_pinned_certificate(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_peer(tmp_path / "store", tls=tmp_path / "tls") as peer, \
                PeerClient() as client:
            assert peer.url.startswith("https://") and "@127.0.0.1:" in peer.url
            fid, data = fragment(100_000)
            await client.put_fragment(peer.url, fid, data, peer.ticket("store", fid, len(data)))
            assert await client.get_fragment(peer.url, fid, peer.ticket("fetch", fid)) == data
            assert (await client.health(peer.url))["peer_id"] == peer.state.peer_id
    asyncio.run(go())


def test_a_peer_presenting_another_certificate_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        _, other_pin = peertls.load_or_create(tmp_path / "other")
        async with serve_peer(tmp_path / "store", tls=tmp_path / "tls") as peer, \
                PeerClient() as client:
            forged = peertls.pinned(peer.url, other_pin)
            fid, data = fragment(5000)
            with pytest.raises(PeerError) as refused:
                await client.put_fragment(forged, fid, data, peer.ticket("store", fid, 5000))
            assert refused.value.status == 403 and "other than the one" in str(refused.value)
            assert peer.store.read(fid) is None  # nothing was sent
            bare = peer.url.replace(peer.url.split("//")[1].split("@")[0] + "@", "")
            with pytest.raises(PeerError):  # unpinned: a self-signed cert fails the CA check
                await client.health(bare)
    asyncio.run(go())


def test_the_certificate_is_made_once_and_its_key_kept_private(tmp_path: Path) -> None:
    ctx, pin = peertls.load_or_create(tmp_path / "tls")
    _, same = peertls.load_or_create(tmp_path / "tls")
    assert isinstance(ctx, ssl.SSLContext) and pin == same and len(pin) == 64
    assert (tmp_path / "tls" / peertls.KEY_FILE).stat().st_mode & 0o077 == 0
    assert urls.target(peertls.pinned("https://h:1/x", pin))[0] == "https://h:1/x"
    with pytest.raises(ValueError):
        urls.target("https://nothex@h:1")
    assert peertls.wants_tls("0.0.0.0") and peertls.wants_tls("198.18.0.1")
    assert not peertls.wants_tls("127.0.0.1") and not peertls.wants_tls("::1")

