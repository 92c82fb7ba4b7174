"""Snapshot records and index blobs: per user, immutable, with a 64 MiB cap."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.support.coordinator import Api, b64, coordinator


def hid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with coordinator(tmp_path_factory.mktemp("blobs")) as server:
        yield server.api


@pytest.mark.parametrize("kind", ["snapshots", "indexes"])
def test_blobs_round_trip_and_stay_with_their_user(api: Api, kind: str) -> None:
    alice, bob = api.register(f"alice-{kind}"), api.register(f"bob-{kind}")
    one, two = hid(f"{kind}1"), hid(f"{kind}2")
    assert alice.call("PUT", f"/v1/{kind}/{one}", {"blob": b64(b"sealed-1")}).status == 201
    assert alice.call("PUT", f"/v1/{kind}/{one}", {"blob": b64(b"sealed-1")}).status == 200
    assert alice.call("PUT", f"/v1/{kind}/{one}", {"blob": b64(b"other")}).status == 409
    alice.ok("PUT", f"/v1/{kind}/{two}", {"blob": b64(b"sealed-22")})
    listed = alice.ok("GET", f"/v1/{kind}")[kind]
    assert sorted((i["id"], i["size"]) for i in listed) == sorted([(one, 8), (two, 9)])
    assert all(isinstance(i["created"], int) for i in listed)
    assert alice.ok("GET", f"/v1/{kind}/{one}") == {"id": one, "blob": b64(b"sealed-1")}
    # bob sees none of it and cannot touch it
    assert bob.ok("GET", f"/v1/{kind}") == {kind: []}
    assert bob.call("GET", f"/v1/{kind}/{one}").status == 404
    assert bob.call("DELETE", f"/v1/{kind}/{one}").status == 404
    assert alice.ok("GET", f"/v1/{kind}/{one}")["blob"] == b64(b"sealed-1")
    # the same id under bob is bob's own, separate object
    bob.ok("PUT", f"/v1/{kind}/{one}", {"blob": b64(b"bobs")})
    assert alice.ok("GET", f"/v1/{kind}/{one}")["blob"] == b64(b"sealed-1")
    alice.ok("DELETE", f"/v1/{kind}/{one}")
    assert alice.call("GET", f"/v1/{kind}/{one}").status == 404
    assert [i["id"] for i in alice.ok("GET", f"/v1/{kind}")[kind]] == [two]
    assert bob.ok("GET", f"/v1/{kind}/{one}")["blob"] == b64(b"bobs")


def test_status_counts_snapshots(api: Api) -> None:
    carol = api.register("carol")
    for i in range(3):
        carol.ok("PUT", f"/v1/snapshots/{hid(f'c{i}')}", {"blob": b64(b"x" * i + b"y")})
    status = carol.ok("GET", "/v1/status")
    assert (status["user"], status["snapshots"], status["packs"]) == ("carol", 3, 0)
    assert status["machine_id"] == carol.machine_id
    assert status["peer_online"] is False


def test_bad_blob_ids_are_400(api: Api) -> None:
    dave = api.register("dave")
    for bad in ("ABC", "g" * 64, "a" * 63, hid("x").upper()):
        r = dave.call("PUT", f"/v1/snapshots/{bad}", {"blob": b64(b"x")})
        assert r.status == 400, bad
        assert "hex" in r.error


@pytest.mark.slow
def test_blob_up_to_64_mib_is_taken_and_over_is_413(api: Api) -> None:
    erin = api.register("erin")
    big = b"\x01" * (64 * 1024 * 1024)
    sid = hid("big")
    assert erin.call("PUT", f"/v1/snapshots/{sid}", {"blob": b64(big)}).status == 201
    assert erin.ok("GET", f"/v1/snapshots/{sid}")["blob"] == b64(big)
    r = erin.raw("PUT", f"/v1/snapshots/{hid('bigger')}",
                 b'{"blob": "' + b"A" * (90 * 1024 * 1024) + b'"}')
    assert r.status == 413
