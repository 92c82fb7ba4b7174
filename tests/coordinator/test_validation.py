"""Every route refuses bad bodies with 4xx and a one-line error, never 5xx."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.coordinator import Api, b64, coordinator, grid

HID = hashlib.sha256(b"x").hexdigest()
FRAG = {"index": 0, "fragment_id": HID, "size": 100, "peer_id": "p" * 32}

# (method, path, a valid body): each body is mutated into bad ones below.
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/users", {"user": "u", "salt": b64(b"s" * 16), "login_key": b64(b"k" * 32),
                           "keyfile": b64(b"kf"), "machine": "m"}),
    ("POST", "/v1/users/someone/machines", {"login_key": b64(b"k" * 32), "machine": "m"}),
    ("PUT", "/v1/keyfile", {"keyfile": b64(b"kf")}),
    ("POST", "/v1/peer", {"url": "http://10.0.0.1:1", "space": 1, "upload": 1, "download": 1}),
    ("POST", "/v1/heartbeat", {"url": "http://10.0.0.1:1", "stored_bytes": 0,
                               "free_bytes": 1}),
    ("POST", "/v1/packs/plan", {"size": 1000}),
    ("POST", f"/v1/packs/{HID}/tickets", {"fragments": [FRAG]}),
    ("POST", f"/v1/packs/{HID}/commit", {"k": 1, "n": 2, "repair": 2, "success": 2,
                                         "length": 10, "fragments": [FRAG]}),
    ("POST", "/v1/packs/exists", {"pack_ids": [HID]}),
    ("PUT", f"/v1/snapshots/{HID}", {"blob": b64(b"b")}),
    ("PUT", f"/v1/indexes/{HID}", {"blob": b64(b"b")}),
]

WRONG = {str: 12, int: "12", list: {"a": 1}, bool: 1}


NO_CAP_NULL = {"space", "upload", "download"}  # caps: null is no cap


def bad_bodies(valid: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    yield "malformed", b'{"size": '
    yield "not-utf8", b"\xff\xfe{}"
    yield "array", b"[1, 2]"
    yield "empty", b""
    yield "deeply nested", b"[" * 200_000 + b"]" * 200_000
    yield "huge number", json.dumps({**valid, next(iter(valid)): 10**400}).encode()
    yield "nan", b'{"size": NaN}'
    yield "unknown field", json.dumps({**valid, "surprise": 1}).encode()
    for name, value in valid.items():
        missing = {k: v for k, v in valid.items() if k != name}
        yield f"missing {name}", json.dumps(missing).encode()
        wrong = WRONG.get(type(value), "text")
        yield f"wrong type {name}", json.dumps({**valid, name: wrong}).encode()
        if name not in NO_CAP_NULL:
            yield f"null {name}", json.dumps({**valid, name: None}).encode()
    for rate in ("upload", "download"):
        if rate in valid:  # a holder must serve: a rate cap of 0 is refused
            yield f"zero {rate}", json.dumps({**valid, rate: 0}).encode()
    if "size" in valid:
        yield "bool size", json.dumps({**valid, "size": True}).encode()
        yield "negative size", json.dumps({**valid, "size": -5}).encode()
    if "fragments" in valid:
        yield "fragment extra", json.dumps(
            {**valid, "fragments": [{**FRAG, "x": 1}]}).encode()
        yield "fragment bad id", json.dumps(
            {**valid, "fragments": [{**FRAG, "fragment_id": "zz"}]}).encode()
        yield "fragment index out of range", json.dumps(
            {**valid, "fragments": [{**FRAG, "index": 999}]}).encode()
        yield "no fragments", json.dumps({**valid, "fragments": []}).encode()
    for key in ("salt", "login_key", "keyfile", "blob"):
        if key in valid:
            yield f"bad base64 {key}", json.dumps({**valid, key: "***"}).encode()
    if "url" in valid:
        yield "bad url", json.dumps({**valid, "url": "ftp://x"}).encode()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with coordinator(tmp_path_factory.mktemp("validation")) as server:
        member = grid(server.api, "member", 1)[0]
        yield member


@pytest.mark.parametrize(("method", "route", "valid"), ROUTES,
                         ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_bad_bodies_are_400_with_an_error(api: Api, method: str, route: str,
                                          valid: dict[str, Any]) -> None:
    for what, data in bad_bodies(valid):
        r = api.raw(method, route, data)
        assert r.status == 400, (what, r)
        assert isinstance(r.body, dict) and r.error and "\n" not in r.error, (what, r)


@pytest.mark.parametrize(("method", "route", "valid"), ROUTES,
                         ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_oversized_bodies_are_413(api: Api, method: str, route: str,
                                  valid: dict[str, Any]) -> None:
    cap = 90 * 1024 * 1024 if "/snapshots/" in route or "/indexes/" in route else 1024 * 1024
    r = api.raw(method, route, b" " * (cap + 1))
    assert r.status == 413, r
    assert r.error


def test_bad_paths_and_methods_are_4xx_json(api: Api) -> None:
    cases = [("GET", "/v1/packs/NOT-HEX"), ("GET", "/v1/nothing"), ("DELETE", "/v1/status"),
             ("GET", "/v1/snapshots/xyz"), ("POST", "/v1/packs/abc/commit"),
             ("GET", "/v1/users/" + "x" * 300 + "/salt")]
    for method, route in cases:
        r = api.raw(method, route, b"{}")
        assert 400 <= r.status < 500, (method, route, r)
        assert r.error


def test_valid_bodies_never_5xx(api: Api) -> None:
    """The valid templates themselves hit conflicts (unknown peer, bad code) but stay 4xx."""
    for method, route, valid in ROUTES:
        r = api.call(method, route, valid)
        assert r.status < 500, (route, r)


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every route the coordinator app serves, path ids filled in."""
    import re
    from pathlib import Path

    from p2pbak.coordinator.http.app import make_app

    app = make_app(Path("unused.db"), run_jobs=False)  # never started: no file is opened
    out = []
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        pattern = info.get("path") or info.get("formatter", "")
        for kind in ("snapshots", "indexes"):
            path = re.sub(r"\{[^}]+\}", HID, pattern.replace("{kind}", kind))
            out.append((route.method, path))
    return sorted(set(out))


def test_every_route_answers_garbage_with_4xx(api: Api) -> None:
    routes = every_route()
    assert {("POST", "/v1/packs/plan"), ("GET", "/v1/health"), ("GET", "/v1/indexes"),
            ("PUT", f"/v1/snapshots/{HID}")} <= set(routes)
    garbage = [b'{"x": ', b"[]", b'{"surprise": 1}', b"\xff", b"[" * 5000]
    for method, route in routes:
        for data in garbage:
            r = api.raw(method, route, data)
            assert r.status < 500, (method, route, data[:20], r)
            if method in ("POST", "PUT"):
                assert 400 <= r.status < 500 and r.error, (method, route, data[:20], r)
        anonymous = Api(api.url).raw(method, route, b'{"x": ')
        assert anonymous.status < 500, (method, route, anonymous)
