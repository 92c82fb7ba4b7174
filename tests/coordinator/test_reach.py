"""POST /v1/reach against a real `p2pbak serve --relay`: dial-back and relay assignment.

The "peers" are small HTTP servers on loopback answering /v1/health with a peer id, so the
coordinator's dial-back reaches real sockets; nothing of the coordinator is mocked.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from p2pbak.localgrid.grid import free_port
from p2pbak.net import tickets
from tests.support.coordinator import Api, Server, coordinator


@contextlib.contextmanager
def health_server(peer_id: str) -> Iterator[int]:
    """A loopback server whose /v1/health names `peer_id`; yields its port."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"ok": True, "peer_id": peer_id}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with coordinator(tmp_path_factory.mktemp("reach"), "--relay") as s:
        yield s


def reach(peer: Api, port: int, **extra: object) -> dict:
    return dict(peer.ok("POST", "/v1/reach", {"port": port, "addresses": ["127.0.0.1"],
                                               **extra}))


def test_a_peer_that_answers_is_public(server: Server) -> None:
    peer = server.api.register("pub")
    with health_server(peer.machine_id) as port:
        got = reach(peer, port)
    url = f"http://127.0.0.1:{port}"
    assert got["observed"] == "127.0.0.1"
    assert got["reachable"] == [url] and got["relay"] is None
    peer.announce(url)
    status = peer.ok("GET", "/v1/status")
    assert status["reached"] == {"how": "public", "url": url}


def test_another_server_at_the_address_does_not_count(server: Server) -> None:
    peer = server.api.register("squatted")
    with health_server("someone-else") as port:
        got = reach(peer, port)
    assert got["reachable"] == []
    assert got["tried"] == [{"url": f"http://127.0.0.1:{port}", "ok": False,
                             "error": "another server answers there"}]


def test_unreachable_peer_gets_a_relay_peer_else_the_coordinator(server: Server) -> None:
    relay = server.api.register("relay")
    hidden = server.api.register("hidden")
    key = tickets.load_public_key(server.api.ok("GET", "/v1/health")["ticket_key"])
    with health_server(relay.machine_id) as relay_port:
        relay_url = f"http://127.0.0.1:{relay_port}"
        assert reach(relay, relay_port, relay=True)["reachable"] == [relay_url]
        relay.announce(relay_url)
        got = reach(hidden, free_port())  # nothing listens there
        assert got["reachable"] == []
        assigned = got["relay"]
        assert assigned["relay_id"] == relay.machine_id and assigned["url"] == relay_url
        t = tickets.verify(key, assigned["ticket"], op="relay", fragment=hidden.machine_id,
                           to=relay.machine_id)
        assert t.from_ == hidden.machine_id
        # the peer says that relay failed it: the coordinator's own relay, the last resort
        last = reach(hidden, free_port(), avoid=[relay_url])["relay"]
        assert last["relay_id"] == "coordinator" and last["url"] == ""
        tickets.verify(key, last["ticket"], op="relay", fragment=hidden.machine_id,
                       to="coordinator")
    # the relay peer is gone (its port closed): not assigned again, even unasked to avoid
    assert reach(hidden, free_port())["relay"]["relay_id"] == "coordinator"
    relayed = f"{server.api.url}/v1/relay/{hidden.machine_id}"
    hidden.announce(relayed)
    reached = hidden.ok("GET", "/v1/status")["reached"]
    assert reached == {"how": "relayed", "via": "coordinator", "url": relayed,
                       "relay_url": server.api.url}
    current = relay.ok("GET", f"/v1/reach/{hidden.machine_id}")
    assert current["url"] == relayed and current["online"] is True


def test_a_relay_assigned_by_one_coordinator_is_known_to_another(
        server: Server, tmp_path: Path) -> None:
    """Who relays whom is kept in the database, not in one process: a second coordinator
    on the same database (or this one restarted) reports the relay a peer was given."""
    relay = server.api.register("relay2")
    hidden = server.api.register("hidden2")
    with health_server(relay.machine_id) as relay_port:
        relay_url = f"http://127.0.0.1:{relay_port}"
        reach(relay, relay_port, relay=True)
        relay.announce(relay_url)
        assert reach(hidden, free_port())["relay"]["relay_id"] == relay.machine_id
    relayed = f"{relay_url}/v1/relay/{hidden.machine_id}"
    hidden.announce(relayed)
    with coordinator(tmp_path, db=server.db) as other:
        reached = Api(other.api.url, hidden.token).ok("GET", "/v1/status")["reached"]
    assert reached == {"how": "relayed", "via": relay.machine_id, "url": relayed,
                       "relay_url": relay_url}


def test_a_relayed_peer_that_punched_a_link_is_reported_hole_punched(server: Server) -> None:
    hidden = server.api.register("puncher")
    assert hidden.call("POST", "/v1/punched", {"links": 1}).status == 409  # no reach yet
    got = reach(hidden, free_port())  # nothing listens there: relayed (the last resort)
    relayed = f"{server.api.url}/v1/relay/{hidden.machine_id}"
    hidden.announce(relayed)
    assert got["relay"] and hidden.ok("GET", "/v1/status")["reached"]["how"] == "relayed"
    for bad in ({}, {"links": -1}, {"links": "2"}, {"links": 1, "more": 0}):
        assert hidden.call("POST", "/v1/punched", bad).status == 400
    assert hidden.ok("POST", "/v1/punched", {"links": 2}) == {"links": 2}
    assert hidden.ok("GET", "/v1/status")["reached"] == {
        "how": "hole-punched", "links": 2, "via": "coordinator", "url": relayed,
        "relay_url": server.api.url}
    # a new reach (a restart, a new relay) keeps what it punched
    reach(hidden, free_port())
    assert hidden.ok("GET", "/v1/status")["reached"]["how"] == "hole-punched"


@pytest.mark.parametrize("body", [
    {"port": 0}, {"port": 70000}, {"port": "8601"}, {"port": 8601, "addresses": "1.2.3.4"},
    {"port": 8601, "addresses": ["x" * 65]}, {"port": 8601, "surprise": 1},
    {"port": 8601, "scheme": "ftp"}, {"port": 8601, "addresses": ["10.0.0.1"] * 17}])
def test_bad_reach_bodies_are_400(server: Server, body: dict) -> None:
    peer = server.api.register(f"bad{abs(hash(json.dumps(body))) % 10**8}")
    r = peer.call("POST", "/v1/reach", body)
    assert r.status == 400 and r.error


def test_reach_needs_a_machine_and_a_known_peer(server: Server) -> None:
    assert server.api.call("POST", "/v1/reach", {"port": 8601}).status == 401
    peer = server.api.register("asker")
    assert peer.call("GET", "/v1/reach/" + "0" * 32).status == 404
    assert peer.call("GET", "/v1/reach/NOT-HEX").status == 400


def test_unspecified_addresses_and_names_are_not_dialled(server: Server) -> None:
    peer = server.api.register("careful")
    port = free_port()
    got = peer.ok("POST", "/v1/reach", {"port": port,
                                         "addresses": ["0.0.0.0", "not-an-ip", "::"]})
    assert [t["url"] for t in got["tried"]] == [f"http://127.0.0.1:{port}"]  # observed only


def test_observed_names_the_port_a_request_came_from(server: Server) -> None:
    """GET /v1/observed, asked from a chosen local port (hole punching, net/punch.py)."""
    import asyncio

    from p2pbak.errors import CoordinatorError
    from p2pbak.net import punch
    from p2pbak.net.api import CoordinatorClient

    peer = server.api.register("observed")
    machine, secret = peer.token.split(".", 1)

    async def go() -> None:
        port = punch.free_port()
        async with CoordinatorClient(server.api.url, machine_id=machine,
                                     secret=secret) as coord:
            assert await coord.observed(port) == ("127.0.0.1", port)
            assert await coord.observed(port) == ("127.0.0.1", port)  # the port reused
        async with CoordinatorClient(server.api.url, machine_id=machine,
                                     secret="wrong") as stranger:
            with pytest.raises(CoordinatorError) as refused:
                await stranger.observed(punch.free_port())
            assert refused.value.status == 401

    asyncio.run(go())
