"""Users, machines, recover and machine tokens against a real `p2pbak serve`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import postgres
from tests.support.coordinator import Api, Server, b64, coordinator
from tests.support.postgres import Backend


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_backend: Backend
           ) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("identity")
    with coordinator(tmp, db=module_backend.database(tmp)) as s:
        yield s


@pytest.fixture()
def api(server: Server) -> Api:
    return server.api


def test_register_then_recover_with_the_right_login_key(api: Api) -> None:
    alice = api.register("alice", login_key=b"A" * 32, keyfile=b"alice-wrapped-key")
    assert api.ok("GET", "/v1/users/alice/salt") == {"salt": b64(b"s" * 16)}
    body = api.ok("POST", "/v1/users/alice/machines",
                  {"login_key": b64(b"A" * 32), "machine": "new-laptop"})
    assert body["keyfile"] == b64(b"alice-wrapped-key")
    recovered = api.as_(f"{body['machine_id']}.{body['secret']}")
    assert recovered.machine_id != alice.machine_id
    assert recovered.ok("GET", "/v1/keyfile") == {"keyfile": b64(b"alice-wrapped-key")}
    assert recovered.ok("GET", "/v1/status")["user"] == "alice"


def test_wrong_login_key_is_403_and_registers_nothing(api: Api) -> None:
    api.register("bob", login_key=b"B" * 32)
    r = api.call("POST", "/v1/users/bob/machines", {"login_key": b64(b"X" * 32),
                                                     "machine": "thief"})
    assert r.status == 403
    assert "wrong passphrase" in r.error
    assert api.call("POST", "/v1/users/nobody/machines",
                    {"login_key": b64(b"X" * 32), "machine": "m"}).status == 404
    assert api.call("GET", "/v1/users/nobody/salt").status == 404


def test_existing_user_is_409(api: Api) -> None:
    api.register("carol")
    r = api.call("POST", "/v1/users", {"user": "carol", "salt": b64(b"s" * 16),
                                       "login_key": b64(b"k" * 32), "keyfile": b64(b"x"),
                                       "machine": "m"})
    assert r.status == 409
    assert "exists" in r.error


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nodot", "Basic abc.def",
                                    "Bearer 00.11", "Bearer {mid}.{wrong}",
                                    "Bearer {mid}.{secret}x", "Bearer ." + "a" * 500])
def test_missing_or_wrong_token_is_401(api: Api, header: str | None) -> None:
    dave = api.register(f"dave{abs(hash(header)) % 10**8}")
    mid, secret = dave.token.split(".")
    headers = {}
    if header is not None:
        headers["Authorization"] = header.format(mid=mid, secret=secret, wrong="0" * 64)
    for method, route in (("GET", "/v1/status"), ("GET", "/v1/keyfile"),
                          ("GET", "/v1/snapshots"), ("POST", "/v1/packs/plan")):
        r = api.raw(method, route, b"{}", headers=headers)
        assert r.status == 401, (header, route, r)
        assert r.error
    assert dave.call("GET", "/v1/status").status == 200


def test_token_of_one_machine_reads_only_its_user(api: Api) -> None:
    erin = api.register("erin", keyfile=b"erin-key")
    frank = api.register("frank", keyfile=b"frank-key")
    assert erin.ok("GET", "/v1/keyfile")["keyfile"] == b64(b"erin-key")
    assert frank.ok("GET", "/v1/keyfile")["keyfile"] == b64(b"frank-key")


def test_passphrase_change_replaces_keyfile_and_login_key(api: Api) -> None:
    gina = api.register("gina", login_key=b"1" * 32, keyfile=b"old")
    gina.ok("PUT", "/v1/keyfile", {"keyfile": b64(b"new"), "salt": b64(b"t" * 16),
                                   "login_key": b64(b"2" * 32)})
    assert api.call("POST", "/v1/users/gina/machines",
                    {"login_key": b64(b"1" * 32), "machine": "m"}).status == 403
    body = api.ok("POST", "/v1/users/gina/machines", {"login_key": b64(b"2" * 32),
                                                      "machine": "m"})
    assert body["keyfile"] == b64(b"new")
    assert api.ok("GET", "/v1/users/gina/salt")["salt"] == b64(b"t" * 16)
    r = gina.call("PUT", "/v1/keyfile", {"keyfile": b64(b"x"), "salt": b64(b"t" * 16)})
    assert r.status == 400


def test_secrets_are_stored_only_hashed(server: Server) -> None:
    hank = server.api.register("hank", login_key=b"H" * 32)
    secret = hank.token.split(".")[1]
    dump = postgres.dump(server.db)
    assert secret not in dump
    assert b64(b"H" * 32) not in dump and (b"H" * 32).hex() not in dump.lower()


def test_concurrent_registrations_and_heartbeats_all_succeed(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def member(i: int) -> int:
        m = api.register(f"crowd{i}")
        m.announce(f"http://10.0.{i}.1:8421")
        for _ in range(5):
            m.heartbeat(f"http://10.0.{i}.1:8421", stored=i)
        return int(m.ok("GET", "/v1/status")["bytes_stored_for_others"])

    with ThreadPoolExecutor(16) as pool:
        stored = list(pool.map(member, range(32)))
    assert stored == list(range(32))
    r = api.call("POST", "/v1/users", {"user": "crowd0", "salt": b64(b"s" * 16),
                                       "login_key": b64(b"k" * 32), "keyfile": b64(b"x"),
                                       "machine": "m"})
    assert r.status == 409


@pytest.mark.parametrize(("user", "machine"), [("a/b", "m"), ("", "m"), ("x" * 65, "m"),
                                               ("ok", ""), ("ok", "two\nlines"),
                                               ("ok", "nul\x00")])
def test_bad_names_are_400(api: Api, user: str, machine: str) -> None:
    r = api.call("POST", "/v1/users", {"user": user, "salt": b64(b"s" * 16),
                                       "login_key": b64(b"k" * 32), "keyfile": b64(b"x"),
                                       "machine": machine})
    assert r.status == 400, r
    assert "user" in r.error or "machine" in r.error
