"""The peer fragment server, in-process over real HTTP, with tickets signed in the test."""

import asyncio
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak.config import Supply
from p2pbak.net import tickets
from p2pbak.net.api import PeerClient, PeerError
from tests.support.peers import Served, fragment, serve_peer, stored_files


def run(coro_fn, root: Path, **kw):  # type: ignore[no-untyped-def]
    async def body() -> None:
        async with serve_peer(root, **kw) as srv, PeerClient() as client:
            await coro_fn(srv, client)

    asyncio.run(body())


async def raw(srv: Served, method: str, fid: str, ticket: str | None = None,
              data: bytes | None = None, headers: dict[str, str] | None = None,
              ) -> tuple[int, dict]:
    h = dict(headers or {})
    if ticket is not None:
        h[tickets.HEADER] = ticket
    async with aiohttp.ClientSession() as s, \
            s.request(method, f"{srv.url}/v1/fragments/{fid}", data=data, headers=h) as r:
        body = await r.json(content_type=None) if method != "HEAD" else {}
        return r.status, body or {}


def test_round_trip(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(200_000)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        assert await c.has_fragment(srv.url, fid, srv.ticket("exists", fid))
        assert await c.get_fragment(srv.url, fid, srv.ticket("fetch", fid)) == data
        health = await c.health(srv.url)
        assert health["peer_id"] == "peer-under-test"
        assert health["stored_bytes"] == len(data)
        await c.delete_fragment(srv.url, fid, srv.ticket("delete", fid))
        assert not await c.has_fragment(srv.url, fid, srv.ticket("exists", fid))
        with pytest.raises(PeerError) as e:
            await c.get_fragment(srv.url, fid, srv.ticket("fetch", fid))
        assert e.value.status == 404
        assert (await c.health(srv.url))["stored_bytes"] == 0

    run(go, tmp_path)
    assert stored_files(tmp_path) == []


def test_stored_on_disk_under_sharded_path(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(1000)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        assert stored_files(tmp_path) == [tmp_path / "fragments" / fid[:2] / fid[2:4] / fid]
        # the same fragment again (another ticket) is accepted, still one copy
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        assert len(stored_files(tmp_path)) == 1
        assert srv.store.stored_bytes == len(data)

    run(go, tmp_path)


def _refusals(srv: Served, fid: str, size: int) -> list[tuple[str, str | None, int, str]]:
    other = Ed25519PrivateKey.generate()
    return [
        ("no ticket", None, 401, "missing ticket"),
        ("forged", srv.ticket("store", fid, size, key=other), 401, "forged"),
        ("garbage", "not-a-ticket", 401, "malformed"),
        ("expired", srv.ticket("store", fid, size, ttl=-5), 401, "expired"),
        ("other peer", srv.ticket("store", fid, size, to="someone-else"), 403, "another peer"),
        ("other op", srv.ticket("fetch", fid, size), 403, "not store"),
        ("other fragment", srv.ticket("store", "0" * 64, size), 403, "another fragment"),
    ]


def test_store_refusals_write_nothing(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(5000)
        for name, ticket, status, needle in _refusals(srv, fid, len(data)):
            got, body = await raw(srv, "PUT", fid, ticket, data)
            assert (got, name) == (status, name)
            assert needle in body["error"], name
        assert stored_files(tmp_path) == []

    run(go, tmp_path)


@pytest.mark.parametrize("op", ["fetch", "exists", "delete"])
def test_other_ops_need_their_own_ticket(tmp_path: Path, op: str) -> None:
    method = {"fetch": "GET", "exists": "HEAD", "delete": "DELETE"}[op]

    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(100)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        assert (await raw(srv, method, fid))[0] == 401
        assert (await raw(srv, method, fid, srv.ticket("store", fid, 100)))[0] == 403
        assert (await raw(srv, method, fid, srv.ticket(op, fid, to="x")))[0] == 403
        assert (await raw(srv, method, fid, srv.ticket(op, fid, ttl=-1)))[0] == 401
        assert stored_files(tmp_path) != []  # a refused delete deletes nothing

    run(go, tmp_path)


def test_replayed_ticket_refused_also_after_restart(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    fid, data = fragment(700)
    first: dict[str, str] = {}

    async def before(srv: Served, c: PeerClient) -> None:
        first["store"] = srv.ticket("store", fid, len(data))
        first["fetch"] = srv.ticket("fetch", fid)
        await c.put_fragment(srv.url, fid, data, first["store"])
        assert await c.get_fragment(srv.url, fid, first["fetch"]) == data
        status, body = await raw(srv, "PUT", fid, first["store"], data)
        assert status == 409 and "already used" in body["error"]

    async def after(srv: Served, c: PeerClient) -> None:
        for op, method in (("store", "PUT"), ("fetch", "GET")):
            status, _ = await raw(srv, method, fid, first[op], data if op == "store" else None)
            assert status == 409, op
        assert await c.get_fragment(srv.url, fid, srv.ticket("fetch", fid)) == data

    run(before, tmp_path, key=key)
    run(after, tmp_path, key=key)


def test_bad_bytes_and_sizes(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(4000)
        wrong = bytes([data[0] ^ 1]) + data[1:]
        status, body = await raw(srv, "PUT", fid, srv.ticket("store", fid, len(data)), wrong)
        assert status == 422 and "hash" in body["error"]
        status, body = await raw(srv, "PUT", fid, srv.ticket("store", fid, len(data) + 1), data)
        assert status == 422
        status, body = await raw(srv, "PUT", fid, srv.ticket("store", fid, len(data) - 1), data)
        assert status == 413
        huge = 64 * 1024 * 1024 + 1
        status, body = await raw(srv, "PUT", fid, srv.ticket("store", fid, huge), data)
        assert status == 413 and "cap" in body["error"]
        assert stored_files(tmp_path) == []

    run(go, tmp_path)


def test_chunked_body_over_ticket_size(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(300_000)

        async def stream():  # type: ignore[no-untyped-def]
            for i in range(0, len(data), 10_000):
                yield data[i:i + 10_000]

        status, _ = await raw(srv, "PUT", fid, srv.ticket("store", fid, 50_000), stream())
        assert status == 413
        assert stored_files(tmp_path) == []

    run(go, tmp_path)


def test_oversized_body_refused_without_reading_it(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, _ = fragment(10)
        host, port = srv.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        ticket = srv.ticket("store", fid, 1000)
        writer.write((f"PUT /v1/fragments/{fid} HTTP/1.1\r\nHost: x\r\n"
                      f"{tickets.HEADER}: {ticket}\r\nContent-Length: {10**12}\r\n\r\n"
                      ).encode() + b"x" * 1000)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413")

    run(go, tmp_path)


@pytest.mark.parametrize("bad", ["..%2Fx", "%2E%2E", "ABC" + "0" * 61, "0" * 63, "0" * 65,
                                 "g" * 64, "%2e%2e%2f%2e%2e%2f" + "0" * 52])
def test_path_like_ids_refused(tmp_path: Path, bad: str) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        for method in ("PUT", "GET", "DELETE"):
            status, body = await raw(srv, method, bad, srv.ticket("store", bad, 3), b"abc")
            assert status in (400, 404), (method, status)
            if status == 400:
                assert "hex" in body["error"]

    run(go, tmp_path)
    assert stored_files(tmp_path) == []
    allowed = {"fragments", "tickets.sqlite", "tickets.sqlite-shm", "tickets.sqlite-wal"}
    assert {p.name for p in tmp_path.iterdir()} <= allowed
    assert not list(tmp_path.parent.glob("x*"))


def test_space_cap_refuses_with_507(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        a, da = fragment(6000)
        b, db = fragment(6000)
        await c.put_fragment(srv.url, a, da, srv.ticket("store", a, len(da)))
        status, body = await raw(srv, "PUT", b, srv.ticket("store", b, len(db)), db)
        assert status == 507 and "space cap" in body["error"]
        assert (await c.health(srv.url))["free_bytes"] == 10_000 - 6000
        assert stored_files(tmp_path) == [tmp_path / "fragments" / a[:2] / a[2:4] / a]

    run(go, tmp_path, caps=Supply(space=10_000))


def test_corrupt_file_is_never_served(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(2000)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        (path,) = stored_files(tmp_path)
        path.write_bytes(b"bitrot" + data[6:])
        assert not await c.has_fragment(srv.url, fid, srv.ticket("exists", fid))
        status, _ = await raw(srv, "GET", fid, srv.ticket("fetch", fid))
        assert status == 404
        assert not path.exists()
        assert srv.store.stored_bytes == 0

    run(go, tmp_path)


def test_leftover_temp_file_not_served_and_cleaned(tmp_path: Path) -> None:
    fid, data = fragment(2000)
    folder = tmp_path / "fragments" / fid[:2] / fid[2:4]
    folder.mkdir(parents=True)
    tmp = folder / f".{fid}.4242.1.tmp"
    tmp.write_bytes(data[:1000])  # a writer killed half way

    async def go(srv: Served, c: PeerClient) -> None:
        assert not tmp.exists()  # cleaned at start
        status, _ = await raw(srv, "GET", fid, srv.ticket("fetch", fid))
        assert status == 404
        assert (await c.health(srv.url))["stored_bytes"] == 0

    run(go, tmp_path)


def test_download_cap_throttles_stores(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(150_000)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        # 150 kB at 100 kB/s with a one-second burst: at least 0.5 s held back
        assert srv.state.download.waited >= 0.5 - 1e-9
        assert srv.state.upload.waited == 0

    run(go, tmp_path, caps=Supply(download=100_000))


def test_upload_cap_throttles_fetches(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        fid, data = fragment(150_000)
        await c.put_fragment(srv.url, fid, data, srv.ticket("store", fid, len(data)))
        assert srv.state.upload.waited == 0
        assert await c.get_fragment(srv.url, fid, srv.ticket("fetch", fid)) == data
        assert srv.state.upload.waited >= 0.5 - 1e-9

    run(go, tmp_path, caps=Supply(upload=100_000))


def test_agent_picks_up_new_caps_from_the_config(tmp_path: Path) -> None:
    import os

    from p2pbak import config
    from p2pbak.peer.agent import Agent
    from p2pbak.peer.server import PeerState
    from p2pbak.store.fragments import FragmentStore

    cfg = config.Config(path=tmp_path / "c.toml", coordinator="http://127.0.0.1:1", user="u",
                        machine_id="m", secret="s", supply=Supply(1000, 10, 20))
    config.save(cfg)
    agent = Agent(cfg.path, tmp_path / "storage")
    agent._load()
    store = FragmentStore(tmp_path / "storage").open()
    state = PeerState(store, "m", Ed25519PrivateKey.generate().public_key(), cfg.supply)
    assert not agent._reload(state)  # unchanged file
    cfg.supply = Supply(5000, None, 300)
    config.save(cfg)
    os.utime(cfg.path, (1, 1))  # a new mtime even on coarse clocks
    assert agent._reload(state)
    assert (state.caps, state.upload.rate, state.download.rate) == (cfg.supply, 0, 300)
    assert state.free_bytes() == min(5000, store.disk_free())
    cfg.path.write_text("broken = [")
    os.utime(cfg.path, (2, 2))
    assert not agent._reload(state)  # a broken edit keeps the caps in force
    assert state.caps == cfg.supply
    store.close()


def test_served_hooks_see_each_completed_transfer(tmp_path: Path) -> None:
    async def go(srv: Served, c: PeerClient) -> None:
        seen: list[tuple[str, int, str]] = []
        srv.state.served_hooks.append(lambda t, wire: seen.append((t.op, t.size, wire)))
        fid, data = fragment(1000)
        store = srv.ticket("store", fid, len(data))
        await c.put_fragment(srv.url, fid, data, store)
        await raw(srv, "PUT", fid, srv.ticket("store", fid, len(data)), b"wrong size")
        assert await c.get_fragment(srv.url, fid, srv.ticket("fetch", fid)) == data
        missing = fragment(10)[0]
        assert not await c.has_fragment(srv.url, missing, srv.ticket("exists", missing))
        assert seen == [("store", 1000, store), ("fetch", 0, seen[1][2])]

    run(go, tmp_path)


def test_listen_and_advertise_defaults() -> None:
    from p2pbak.commands.peer_run import parse_listen
    from p2pbak.errors import P2pbakError
    from p2pbak.peer.agent import Agent

    assert parse_listen("127.0.0.1:8421") == ("127.0.0.1", 8421)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8421", "host:", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(P2pbakError, match="HOST:PORT"):
            parse_listen(bad)
    assert Agent(Path("c"), Path("s"), "::1", 9000).url() == "http://[::1]:9000"
    assert Agent(Path("c"), Path("s"), "10.0.0.2", 1).url() == "http://10.0.0.2:1"
    assert Agent(Path("c"), Path("s"), advertise="https://me.example").url() \
        == "https://me.example"


def test_foreign_ticket_key_is_warned_once(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from p2pbak import config
    from p2pbak.peer.agent import Agent

    cfg = config.Config(path=tmp_path / "c.toml", coordinator="http://127.0.0.1:1", user="u",
                        machine_id="m", secret="s", ticket_key="aa" * 32)
    config.save(cfg)
    agent = Agent(cfg.path, tmp_path / "storage")
    agent._load()
    for _ in range(3):
        agent._check_key({"ok": True, "ticket_key": "aa" * 32})
        agent._check_key({"ok": True, "ticket_key": "bb" * 32})
    warned = [r for r in caplog.records if "another ticket key" in r.getMessage()]
    assert len(warned) == 1
