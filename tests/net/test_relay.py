"""The relay on loopback: a real peer server reached only through a relay's WebSocket link.

One process, real sockets: a fragment server (net/peer.py), a relay (net/relay.py) and the
relayed side of the link (net/peer_reach.Reacher) joined by one WebSocket, as a peer behind
NAT would be; clients talk to the relay URL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pbak.localgrid.grid import free_port
from p2pbak.net import proofs, seal, tickets
from p2pbak.net.api import PeerClient, PeerError
from p2pbak.net.ratelimit import TokenBucket
from p2pbak.net.relay import RelayState, add_relay, relay_url
from p2pbak.net.relay_mux import WINDOW, Mux
from p2pbak.net.urls import relay_base
from p2pbak.net.validate import error_middleware
from p2pbak.peer.reach import Reacher
from tests.support.peers import Served, fragment, serve_peer

RELAY_ID = "ab" * 16
RELAYED = "cd" * 16  # the relayed peer's machine id


@dataclass
class Linked:
    peer: Served
    relay: RelayState
    url: str  # the relayed peer's URL at the relay, pinning its link key
    link: asyncio.Task[None]
    tap: Tap  # every byte to and from the relay, client side and link side

    def relay_ticket(self, key: Ed25519PrivateKey | None = None) -> str:
        return tickets.issue(key or self.peer.key, op="relay", fragment=RELAYED, size=0,
                             from_=RELAYED, to=RELAY_ID)

    @property
    def base(self) -> str:
        return relay_base(self.url)


@contextlib.asynccontextmanager
async def linked(root: Path, rate: int = 0, *, impostor: bool = False,
                 ) -> AsyncIterator[Linked]:
    """A peer server, a relay (behind a Tap), and the peer's link to the relay, all up, as
    a peer behind NAT runs it; with `impostor` the peer answers with a key other than the
    one its URL pins."""
    pinned = X25519PrivateKey.generate()
    async with serve_peer(root) as peer:
        state = RelayState(key=peer.key.public_key, relay_id=RELAY_ID,
                           bucket=TokenBucket(rate))
        app = web.Application(middlewares=[error_middleware])
        add_relay(app, state)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        tap = await Tap(port).start()
        base = f"http://127.0.0.1:{tap.port}"
        session = aiohttp.ClientSession()
        key = X25519PrivateKey.generate() if impostor else pinned
        link = asyncio.create_task(_link(session, peer, base, key))
        try:
            for _ in range(200):
                if RELAYED in state.tunnels:
                    break
                await asyncio.sleep(0.01)
            url = relay_url(base, RELAYED) + seal.KEY_MARK + seal.public_hex(pinned)
            yield Linked(peer, state, url, link, tap)
        finally:
            link.cancel()
            with contextlib.suppress(BaseException):
                await link
            await session.close()
            tap.close()
            await runner.cleanup()


async def _link(session: aiohttp.ClientSession, peer: Served, base: str,
                key: X25519PrivateKey) -> None:
    """What a relayed peer's Reacher does: connect out, answer streams from its server."""
    port = int(peer.url.rsplit(":", 1)[1])
    reacher = Reacher("127.0.0.1", port, relay=False, link_key=key, on_change=lambda r: None)
    reacher._session = session
    ticket = tickets.issue(peer.key, op="relay", fragment=RELAYED, size=0, from_=RELAYED,
                           to=RELAY_ID)
    async with session.ws_connect(relay_url(base, RELAYED) + "/connect",
                                  headers={tickets.HEADER: ticket}) as ws:
        await Mux(ws, on_open=reacher._serve, first_id=2).run()


def test_store_fetch_exists_delete_through_the_relay(tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path) as lk, PeerClient() as client:
            fid, data = fragment(3 * WINDOW + 12345)  # several windows of credit
            t = lk.peer.ticket
            await client.put_fragment(lk.url, fid, data, t("store", fid, len(data)))
            assert lk.peer.store.read(fid) == data
            assert await client.get_fragment(lk.url, fid, t("fetch", fid)) == data
            assert await client.has_fragment(lk.url, fid, t("exists", fid))
            await client.delete_fragment(lk.url, fid, t("delete", fid))
            assert lk.peer.store.read(fid) is None
            assert lk.relay.carried >= 2 * len(data)
            # the peer's own refusals come back through the relay as they are
            with pytest.raises(PeerError) as refused:
                await client.get_fragment(lk.url, fid, t("fetch", fid, to="someone-else"))
            assert refused.value.status == 403 and "another peer" in str(refused.value)
    asyncio.run(go())


def test_a_slow_reader_holds_back_the_relayed_peer(tmp_path: Path) -> None:
    """Backpressure end to end: a client that stops reading stops the peer sending."""
    async def go() -> None:
        async with linked(tmp_path) as lk:
            fid, data = fragment(40 * 1024 * 1024)
            lk.peer.store.put(fid, data)
            blob, _ = seal.seal_request(seal.url_key(lk.url), {
                "method": "GET", "path": f"/v1/fragments/{fid}",
                "headers": {tickets.HEADER: lk.peer.ticket("fetch", fid)}}, b"")
            r, w = await asyncio.open_connection("127.0.0.1", lk.tap.port)
            path = lk.url.split("/", 3)[3]
            w.write(f"POST /{path}{seal.SEALED_PATH} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(blob)}\r\n\r\n".encode() + blob)
            await w.drain()
            await r.readuntil(b"\r\n\r\n")
            await asyncio.sleep(1.5)  # not reading: socket buffers fill, then credit stops
            held = lk.relay.tunnels[RELAYED].bytes_carried
            assert held < len(data) // 2  # the rest waits at the peer, not in the relay
            got = 0
            while got < len(data):
                chunk = await r.read(1 << 20)
                assert chunk
                got += len(chunk)
            w.close()
    asyncio.run(go())


def test_relay_refuses_bad_tickets_and_unknown_peers(tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path) as lk, aiohttp.ClientSession() as s:
            connect = lk.url + "/connect"
            forged = lk.relay_ticket(Ed25519PrivateKey.generate())
            async with s.get(connect, headers={tickets.HEADER: forged}) as resp:
                assert resp.status == 401 and "forged" in (await resp.json())["error"]
            other = tickets.issue(lk.peer.key, op="relay", fragment="ef" * 16, size=0,
                                  from_="x", to=RELAY_ID)
            async with s.get(connect, headers={tickets.HEADER: other}) as resp:
                assert resp.status == 403 or resp.status == 401
            nobody = lk.url.replace(RELAYED, "ee" * 16) + "/v1/health"
            async with s.get(nobody) as resp:
                assert resp.status == 503 and "not connected" in (await resp.json())["error"]
            async with s.get(lk.url.replace(RELAYED, "NOT-HEX") + "/v1/health") as resp:
                assert resp.status == 400
    asyncio.run(go())


def test_a_replayed_relay_ticket_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path) as lk, aiohttp.ClientSession() as s:
            ticket = lk.relay_ticket()
            async with s.ws_connect(lk.url + "/connect",
                                    headers={tickets.HEADER: ticket}) as ws:
                await ws.close()
            async with s.get(lk.url + "/connect", headers={tickets.HEADER: ticket}) as resp:
                assert resp.status == 409
    asyncio.run(go())


def test_a_link_that_breaks_mid_answer_fails_the_transfer_cleanly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with linked(tmp_path, rate=2 * 1024 * 1024) as lk, PeerClient() as client:
            fid, data = fragment(8 * 1024 * 1024)  # 4 s through the relay's cap
            lk.peer.store.put(fid, data)
            fetch = asyncio.create_task(
                client.get_fragment(lk.url, fid, lk.peer.ticket("fetch", fid)))
            await asyncio.sleep(0.5)
            await lk.relay.tunnels[RELAYED].ws.close()  # the relayed peer's link drops
            with pytest.raises(PeerError) as broken:
                await asyncio.wait_for(fetch, 20)
            assert broken.value.status == 0  # unreachable: the caller may reroute
    with caplog.at_level(logging.INFO):
        asyncio.run(go())
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


def test_callers_that_give_up_leave_no_error_behind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A restore cancels the fetches it no longer needs; a backup its slow uploads."""
    async def go() -> None:
        async with linked(tmp_path, rate=2 * 1024 * 1024) as lk:
            client = PeerClient()
            fid, data = fragment(8 * 1024 * 1024)
            lk.peer.store.put(fid, data)
            up_fid, up = fragment(8 * 1024 * 1024)
            jobs = [client.get_fragment(lk.url, fid, lk.peer.ticket("fetch", fid)),
                    client.put_fragment(lk.url, up_fid, up,
                                        lk.peer.ticket("store", up_fid, len(up)))]
            tasks = [asyncio.create_task(j) for j in jobs]
            await asyncio.sleep(0.5)
            for t in tasks:
                t.cancel()
            await client.close()
            await asyncio.sleep(0.5)
            assert RELAYED in lk.relay.tunnels  # the link itself carries on
            assert lk.peer.store.read(up_fid) is None
    with caplog.at_level(logging.INFO):
        asyncio.run(go())
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


# -- sealed: what crosses the relay is ciphertext -------------------------------------------

class Tap:
    """A TCP forwarder in front of the relay that keeps every byte it passes (the wire)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> Tap:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    self.seen += data
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(pipe(r, tw), pipe(tr, w))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def test_the_relay_sees_only_ciphertext(tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path) as lk, PeerClient() as client:
            peer, url, tap = lk.peer, lk.url, lk.tap
            fid, data = fragment(300_000, seed=b"p2pbak_private_plans.odt quarterly numbers")
            store, fetch = peer.ticket("store", fid, len(data)), peer.ticket("fetch", fid)
            await client.put_fragment(url, fid, data, store)
            assert peer.store.read(fid) == data
            assert await client.get_fragment(url, fid, fetch) == data
            assert (await client.health(url))["peer_id"] == peer.state.peer_id
            # unsealed requests through the relay are refused by the peer itself
            async with aiohttp.ClientSession() as s, s.get(url + "/v1/health") as resp:
                assert resp.status == 403
            wire = bytes(tap.seen)
            assert len(wire) > 2 * len(data)  # it all went through the tap
            for secret in (store, fetch, fid, store.split(".")[1], data[:64], data[-64:],
                           b"p2pbak_private_plans"):  # (the link's own relay ticket is)
                needle = secret.encode() if isinstance(secret, str) else secret
                assert needle not in wire, needle[:40]
    asyncio.run(go())


def test_a_peer_without_the_pinned_key_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path, impostor=True) as lk, PeerClient() as client:
            peer, url = lk.peer, lk.url
            fid, data = fragment(5000)
            with pytest.raises(PeerError) as refused:
                await client.put_fragment(url, fid, data, peer.ticket("store", fid, len(data)))
            assert refused.value.status == 400 and "not sealed for this peer" in str(
                refused.value)
            assert peer.store.read(fid) is None
    asyncio.run(go())


def test_a_storage_proof_crosses_the_relay_sealed(tmp_path: Path) -> None:
    """Audits reach peers behind NAT too: the challenge and its answer are sealed."""
    async def go() -> None:
        async with linked(tmp_path) as lk, PeerClient() as client:
            fid, data = fragment(200_000)
            lk.peer.store.put(fid, data)
            nonce = "5a" * 16
            indices = proofs.challenge_indices(bytes.fromhex(nonce), len(data), 4)
            answer = await client.prove_fragment(lk.url, fid, lk.peer.ticket("prove", fid),
                                                 {"nonce": nonce, "indices": indices})
            proofs.verify_answer(proofs.root(data), len(data), indices, answer["proofs"])
            assert answer["nonce"] == nonce
            assert fid.encode() not in bytes(lk.tap.seen)
    asyncio.run(go())


def test_a_relayed_url_without_a_pinned_key_is_never_sent_in_the_clear(
        tmp_path: Path) -> None:
    async def go() -> None:
        async with linked(tmp_path) as lk, PeerClient() as client:
            bare = lk.url.split(seal.KEY_MARK, 1)[0]
            fid, data = fragment(5000)
            before = len(lk.tap.seen)
            with pytest.raises(PeerError) as refused:
                await client.put_fragment(bare, fid, data, lk.peer.ticket("store", fid, 5000))
            assert "pins no link key" in str(refused.value)
            assert len(lk.tap.seen) == before and lk.peer.store.read(fid) is None
    asyncio.run(go())
