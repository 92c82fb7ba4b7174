"""POST /v1/punch (peer/server.py) and the simultaneous open it starts (net/punch.py)."""

import asyncio
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak.net import punch, tickets
from tests.support.peers import Served, fragment, serve_peer

BODY = {"ip": "198.18.0.11", "port": 40001}


async def _punch(srv: Served, ticket: str | None, body: object = BODY) -> tuple[int, dict]:
    headers = {tickets.HEADER: ticket} if ticket is not None else {}
    async with aiohttp.ClientSession() as s, \
            s.post(f"{srv.url}{punch.PUNCH_PATH}", json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def test_punch_needs_an_unspent_ticket_to_this_peer(tmp_path: Path) -> None:
    dialled: list[tuple[str, int]] = []

    async def opener(ip: str, port: int) -> dict[str, object]:
        dialled.append((ip, port))
        return {"ip": "198.18.0.12", "port": 8601, "pin": "ab" * 32}

    async def go() -> None:
        async with serve_peer(tmp_path) as srv:
            fid = "0" * 64
            assert (await _punch(srv, srv.ticket("store", fid, 10)))[0] == 404  # no opener
            srv.state.opener = opener
            other = Ed25519PrivateKey.generate()
            for ticket, status, why in (
                    (None, 401, "missing ticket"),
                    (srv.ticket("store", fid, 10, key=other), 401, "forged"),
                    (srv.ticket("fetch", fid, ttl=-5), 401, "expired"),
                    (srv.ticket("store", fid, 10, to="someone-else"), 403, "another peer")):
                got, body = await _punch(srv, ticket)
                assert (got, why in body["error"]) == (status, True), body
            spent = srv.ticket("store", fid, 10)
            t = tickets.verify(srv.key.public_key(), spent, op="store", fragment=fid,
                               to=srv.state.peer_id)
            srv.store.use_ticket(t.id, t.exp)
            assert (await _punch(srv, spent))[0] == 409
            assert dialled == []  # no refused caller made it dial
            bad = await _punch(srv, srv.ticket("exists", fid), {"ip": "nowhere", "port": 1})
            assert bad[0] == 400 and dialled == []
            ok, answer = await _punch(srv, srv.ticket("exists", fid))
            assert ok == 200 and answer["port"] == 8601
            assert dialled == [("198.18.0.11", 40001)]

    asyncio.run(go())


def test_a_peer_dials_out_from_the_port_it_listens_on() -> None:
    """The peer's listener shares its port (SO_REUSEPORT) with the dial that opens its NAT
    for the client, and still accepts connections."""
    async def go() -> None:
        loop = asyncio.get_running_loop()
        listener = punch.reusable(port=punch.free_port())
        listener.listen()
        other = punch.reusable(port=punch.free_port())
        other.listen()
        with listener, other:
            mine, theirs = listener.getsockname()[1], other.getsockname()[1]
            dialled = await punch.dial_from(mine, "127.0.0.1", theirs)
            assert dialled is not None
            with dialled:
                assert dialled.getsockname()[1] == mine
                await loop.sock_sendall(dialled, b"ping")
                accepted, _ = await loop.run_in_executor(None, other.accept)
                with accepted:
                    assert accepted.recv(4) == b"ping"
            with punch.reusable() as client:  # the listener still answers
                client.connect(("127.0.0.1", mine))
                listener.accept()[0].close()

    asyncio.run(go())


def test_a_dial_nobody_answers_gives_up() -> None:
    async def go() -> None:
        # a port that nothing listens on or dials from: refused, again, until the deadline
        got = await punch.dial_from(punch.free_port(), "127.0.0.1", punch.free_port(), 0.5)
        assert got is None

    asyncio.run(go())


def test_a_transfer_not_brought_by_the_relay_link_is_receipted_direct(tmp_path: Path) -> None:
    """What the relay link brings is replayed from this machine (peer/reach.py); a ticket
    naming a relay but served to another address went over a punched link: its receipt
    says so, and the relay is not paid for it (coordinator/billing.py)."""
    got: list[str] = []

    async def put(srv: Served, source: str, via: str) -> None:
        fid, data = fragment(1000)
        wire = tickets.issue(srv.key, op="store", fragment=fid, size=len(data),
                             from_="client", to=srv.state.peer_id, via=via)
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as s, \
                s.put(f"{srv.url}/v1/fragments/{fid}", data=data,
                      headers={tickets.HEADER: wire}) as r:
            assert r.status == 201
        assert got[-1].startswith(wire)

    async def go() -> None:
        async with serve_peer(tmp_path) as srv:
            srv.state.served_hooks.append(lambda _t, wire: got.append(wire))
            await put(srv, "127.0.0.1", "relay-peer")  # from here: as the relay link's
            await put(srv, "127.0.0.2", "relay-peer")  # from elsewhere: direct
            await put(srv, "127.0.0.2", "")  # names no relay: nothing to say
    asyncio.run(go())
    assert [tickets.split_receipt(w)[1] for w in got] == [False, True, False]
