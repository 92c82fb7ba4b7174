"""Security and bad input against a running grid: tickets, corrupt bytes, other users' data,
what the coordinator's database holds, and the one-line errors a user sees."""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pbak.config import load, save
from p2pbak.localgrid.demo import compare_trees, restored_root, sample_tree
from p2pbak.localgrid.grid import Grid, fragment_files, free_port, pack_code
from p2pbak.net import tickets
from tests.support.grid import one_line_error, summary

pytestmark = pytest.mark.slow


def http(method: str, url: str, body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def bearer(config: Path) -> dict[str, str]:
    cfg = load(config)
    return {"Authorization": f"Bearer {cfg.machine_id}.{cfg.secret}"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_tree(tmp_path_factory.mktemp("src") / "secret project",
                       random_bytes=256 * 1024)


@pytest.fixture(scope="module")
def alice(grid: Grid, tree: Path) -> dict[str, Any]:
    config = grid.add_user("alice")
    snap = summary(grid.cli("backup", str(tree), "--json", config=config))["snapshot_id"]
    return {"config": config, "snapshot": snap, "auth": bearer(config)}


@pytest.fixture(scope="module")
def bob(grid: Grid) -> dict[str, Any]:
    config = grid.add_user("bob")
    return {"config": config, "auth": bearer(config)}


def _pack(grid: Grid, alice: dict) -> tuple[str, dict[str, Any]]:
    pack_id = sorted(fragment_files(grid))[0]
    status, raw = http("GET", f"{grid.url}/v1/packs/{pack_id}", headers=alice["auth"])
    assert status == 200, raw
    return pack_id, json.loads(raw)


def _signing_key(grid: Grid) -> Ed25519PrivateKey:
    """The coordinator's own ticket key, read from its database (only a test may)."""
    with sqlite3.connect(f"file:{grid.db}?mode=ro", uri=True) as db:
        (raw,) = db.execute("SELECT value FROM settings WHERE name='ticket_signing_key'").fetchone()
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


def _frag_url(frag: dict[str, Any]) -> str:
    return f"{frag['url']}/v1/fragments/{frag['fragment_id']}"


def test_fetch_ticket_works_once(grid: Grid, alice: dict) -> None:
    _, pack = _pack(grid, alice)
    frag = pack["fragments"][0]
    headers = {tickets.HEADER: frag["ticket"]}
    status, body = http("GET", _frag_url(frag), headers=headers)
    assert status == 200
    assert blake3.blake3(body).hexdigest() == frag["fragment_id"]
    status, body = http("GET", _frag_url(frag), headers=headers)
    assert status == 409 and "error" in json.loads(body)


def test_missing_forged_expired_and_misdirected_tickets_refused(grid: Grid,
                                                                alice: dict) -> None:
    _, pack = _pack(grid, alice)
    frag, other = pack["fragments"][0], pack["fragments"][1]
    key = _signing_key(grid)

    def sign(signer: Ed25519PrivateKey, *, op: str = "fetch", to: str = frag["peer_id"],
             ttl: int = 600) -> dict[str, str]:
        return {tickets.HEADER: tickets.issue(signer, op=op, fragment=frag["fragment_id"],
                                              size=frag["size"], from_="x", to=to, ttl=ttl)}

    cases = {
        "none": ({}, 401),
        "forged": (sign(Ed25519PrivateKey.generate()), 401),
        "expired": (sign(key, ttl=-60), 401),
        "other peer": (sign(key, to=other["peer_id"]), 403),
        "other op": (sign(key, op="delete"), 403),
        "garbage": ({tickets.HEADER: "not.a-ticket"}, 401),
    }
    for name, (headers, want) in cases.items():
        status, body = http("GET", _frag_url(frag), headers=headers)
        assert status == want, (name, body)
        assert json.loads(body)["error"], name
    status, _ = http("GET", _frag_url(frag), headers=sign(key))
    assert status == 200  # the fragment is still there and servable


def test_store_refuses_corrupt_and_oversized_bytes(grid: Grid, alice: dict,
                                                   bob: dict) -> None:
    plan = json.loads(http("POST", f"{grid.url}/v1/packs/plan", {"size": 3 * 4096},
                           bob["auth"])[1])
    good = os.urandom(plan["fragment_size"])  # tickets are signed for the planned size only
    fid = blake3.blake3(good).hexdigest()
    peer = plan["peers"][0]
    fake_pack = blake3.blake3(b"a pack bob never made").hexdigest()

    def ticket() -> dict[str, str]:
        status, raw = http("POST", f"{grid.url}/v1/packs/{fake_pack}/tickets", {"fragments": [
            {"index": 0, "fragment_id": fid, "size": len(good), "peer_id": peer["peer_id"]}]},
            bob["auth"])
        assert status == 200, raw
        return {tickets.HEADER: json.loads(raw)["tickets"][0]}

    url = f"{peer['url']}/v1/fragments/{fid}"
    flipped = bytes([good[0] ^ 1]) + good[1:]
    assert http("PUT", url, flipped, ticket())[0] == 422
    assert http("PUT", url, good + b"x" * 10_000, ticket())[0] == 413
    assert http("PUT", url, good, {})[0] == 401
    assert http("PUT", url, good, ticket())[0] == 201


def test_other_user_cannot_list_fetch_or_delete(grid: Grid, alice: dict,
                                                bob: dict) -> None:
    pack_id, _ = _pack(grid, alice)
    snap = alice["snapshot"]
    status, raw = http("GET", f"{grid.url}/v1/snapshots", headers=bob["auth"])
    assert status == 200 and snap not in raw.decode()
    for method, path in [("GET", f"/v1/snapshots/{snap}"), ("DELETE", f"/v1/snapshots/{snap}"),
                         ("GET", f"/v1/packs/{pack_id}")]:
        assert http(method, grid.url + path, headers=bob["auth"])[0] == 404, path
    status, raw = http("POST", f"{grid.url}/v1/packs/exists", {"pack_ids": [pack_id]},
                       bob["auth"])
    assert status == 200 and json.loads(raw)["present"] == []
    _, raw = http("GET", f"{grid.url}/v1/indexes", headers=alice["auth"])
    for idx in json.loads(raw)["indexes"]:
        assert http("GET", f"{grid.url}/v1/indexes/{idx['id']}",
                    headers=bob["auth"])[0] == 404
    _bob_cannot_touch_alices_fragment(grid, alice, bob)
    r = grid.cli("restore", snap, "--target", "/nonexistent/x", config=bob["config"])
    one_line_error(r)
    # alice still has everything
    r = grid.cli("snapshots", "--json", config=alice["config"])
    assert snap in r.stdout


def _bob_cannot_touch_alices_fragment(grid: Grid, alice: dict, bob: dict) -> None:
    """Bob gets no ticket for alice's fragment (no plan of his names it); and a store ticket
    (the only kind a plan could give him) would be useless against it."""
    _, pack = _pack(grid, alice)
    frag = pack["fragments"][0]
    fake_pack = blake3.blake3(b"bob's own pack").hexdigest()
    status, raw = http("POST", f"{grid.url}/v1/packs/{fake_pack}/tickets", {"fragments": [
        {"index": 0, "fragment_id": frag["fragment_id"], "size": frag["size"],
         "peer_id": frag["peer_id"]}]}, bob["auth"])
    assert status == 409 and b"no plan" in raw, raw
    bobs = load(bob["config"]).machine_id
    ticket = {tickets.HEADER: tickets.issue(_signing_key(grid), op="store",
                                            fragment=frag["fragment_id"], size=frag["size"],
                                            from_=bobs, to=frag["peer_id"])}
    assert http("DELETE", _frag_url(frag), headers=ticket)[0] == 403
    assert http("GET", _frag_url(frag), headers=ticket)[0] == 403
    _, again = _pack(grid, alice)
    same = next(f for f in again["fragments"] if f["fragment_id"] == frag["fragment_id"])
    assert http("GET", _frag_url(same), headers={tickets.HEADER: same["ticket"]})[0] == 200


def test_bad_requests_get_4xx_with_a_message(grid: Grid, alice: dict) -> None:
    peer = grid.peers[0].process.url
    auth = {**alice["auth"], "Content-Type": "application/json"}
    cases = [
        ("POST", f"{grid.url}/v1/packs/plan", b"{not json", auth),
        ("POST", f"{grid.url}/v1/packs/plan", b'{"size": 10, "extra": 1}', auth),
        ("POST", f"{grid.url}/v1/packs/plan", b'{"size": "ten"}', auth),
        ("POST", f"{grid.url}/v1/packs/exists", b"[]", auth),
        ("GET", f"{grid.url}/v1/packs/..%2F..%2Fetc", None, auth),
        ("GET", f"{peer}/v1/fragments/..%2F..%2Fconfig.toml", None, {}),
        ("GET", f"{peer}/v1/fragments/{'g' * 64}", None, {}),
        ("PUT", f"{peer}/v1/fragments/{'a' * 63}", b"x", {}),
    ]
    for method, url, body, headers in cases:
        status, raw = http(method, url, body, headers)
        assert 400 <= status < 500, (method, url, status, raw)
        assert json.loads(raw)["error"], (method, url)


def test_database_holds_no_file_names(grid: Grid, alice: dict, tree: Path) -> None:
    raw = b"".join(p.read_bytes() for p in grid.db.parent.glob(grid.db.name + "*"))
    assert raw, "the coordinator database is empty"
    names = {p.name for p in tree.rglob("*")} | {tree.name}
    for name in names:
        if len(name.encode()) >= 6:
            assert name.encode() not in raw, name
            assert name.encode("utf-16-le") not in raw, name


def test_unreachable_coordinator_is_one_line_exit_14(grid: Grid, alice: dict,
                                                     tree: Path, tmp_path: Path) -> None:
    cfg = load(alice["config"])
    cfg.path = tmp_path / "config.toml"
    cfg.coordinator = f"http://127.0.0.1:{free_port()}"
    save(cfg)
    r = grid.cli("backup", str(tree), config=cfg.path)
    assert r.returncode == 14
    assert "coordinator" in one_line_error(r)


def test_wrong_passphrase_is_one_line_exit_12(grid: Grid, alice: dict, tree: Path,
                                              tmp_path: Path) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("guess\n")
    r = grid.cli("backup", str(tree), config=alice["config"],
                 env={"P2PBAK_PASSWORD_FILE": str(wrong)})
    assert r.returncode == 12
    one_line_error(r)


def test_corrupted_fragments_on_disk_are_skipped(grid: Grid, alice: dict, tree: Path,
                                                 tmp_path: Path) -> None:
    """Damage total−k fragments of every pack on the peers' disks: restore still works."""
    for holders in fragment_files(grid).values():
        k, _ = pack_code(holders[0][1])
        for _, path in holders[: len(holders) - k]:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
    r = grid.cli("restore", alice["snapshot"], "--target", str(tmp_path), "--json",
                 config=alice["config"])
    summary(r)
    assert compare_trees(tree, restored_root(tmp_path, tree)) == []
