"""Placement, store/fetch tickets and commits against a real `p2pbak serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pbak.coordinator.placement import spare_count
from p2pbak.net import tickets
from tests.support.coordinator import (
    PACK_SIZE,
    Api,
    commit_body,
    coordinator,
    fid,
    fragments,
    grid,
    store_pack,
)
from tests.support.postgres import Backend


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_backend: Backend
          ) -> Iterator[tuple[Api, list[Api]]]:
    tmp = tmp_path_factory.mktemp("packs")
    with coordinator(tmp, db=module_backend.database(tmp)) as server:
        peers = grid(server.api, "peer", 6)
        yield server.api, peers


def test_plan_never_includes_caller_nor_a_peer_twice(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    known = {p.machine_id for p in peers}
    for caller in peers:
        plan = caller.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
        ids = [p["peer_id"] for p in plan["peers"]]  # n suppliers, then spares
        assert plan["n"] == plan["total"] <= len(ids) <= plan["n"] + spare_count(plan["n"])
        assert len(set(ids)) == len(ids)
        assert len(ids) == min(len(peers) - 1, plan["n"] + spare_count(plan["n"]))
        assert caller.machine_id not in ids
        assert set(ids) <= known
        assert 1 <= plan["k"] < plan["success"] <= plan["n"] and plan["repair"] <= plan["n"]
        assert plan["k"] <= 2 * plan["n"] / 3
        assert 0 < plan["availability"] < 1


def test_tickets_verify_with_published_key_and_name_the_right_peers(
        world: tuple[Api, list[Api]]) -> None:
    api, peers = world
    owner = peers[0]
    key = tickets.load_public_key(api.ok("GET", "/v1/health")["ticket_key"])
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    pack = fid("ticketed")
    frags = fragments(plan, pack)
    wires = owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})["tickets"]
    assert len(wires) == len(frags)
    for frag, wire in zip(frags, wires, strict=True):
        t = tickets.verify(key, wire, op="store", fragment=frag["fragment_id"],
                           to=frag["peer_id"])
        assert (t.from_, t.size) == (owner.machine_id, frag["size"])
        with pytest.raises(tickets.TicketError):
            tickets.verify(key, wire, op="fetch", fragment=frag["fragment_id"],
                           to=frag["peer_id"])
    owner.ok("POST", f"/v1/packs/{pack}/commit", commit_body(plan, frags))
    got = owner.ok("GET", f"/v1/packs/{pack}")
    assert (got["k"], got["n"], got["length"]) == (plan["k"], plan["n"], PACK_SIZE)
    by_peer = {p["peer_id"]: p["url"] for p in plan["peers"]}
    listed = sorted(got["fragments"], key=lambda f: f["index"])  # listed in fetch order
    for frag, entry in zip(frags, listed, strict=True):
        assert entry["fragment_id"] == frag["fragment_id"]
        assert entry["peer_id"] == frag["peer_id"]
        assert entry["url"] == by_peer[frag["peer_id"]]
        assert entry["online"] is True
        t = tickets.verify(key, entry["ticket"], op="fetch", fragment=frag["fragment_id"],
                           to=frag["peer_id"])
        assert t.from_ == owner.machine_id


def test_commit_is_idempotent_and_lists_as_present(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner = peers[1]
    pack = fid("twice")
    stored = store_pack(owner, pack)
    plan, frags = stored["plan"], stored["all"]
    owner.ok("POST", f"/v1/packs/{pack}/commit", commit_body(plan, frags))
    other = [dict(f, fragment_id=fid(f"other/{f['index']}")) for f in frags]
    assert owner.call("POST", f"/v1/packs/{pack}/commit",
                      commit_body(plan, other)).status == 409
    absent = fid("never")
    assert owner.ok("POST", "/v1/packs/exists", {"pack_ids": [absent, pack]}) == {
        "present": [pack]}
    status = owner.ok("GET", "/v1/status")
    assert status["packs"] >= 1 and status["bytes_backed_up"] >= PACK_SIZE


def test_commit_with_fewer_than_success_fragments_is_409(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner = peers[2]
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    pack = fid("short")
    frags = fragments(plan, pack)
    owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})
    r = owner.call("POST", f"/v1/packs/{pack}/commit",
                   commit_body(plan, frags[: plan["success"] - 1]))
    assert r.status == 409
    assert "needed" in r.error
    assert owner.ok("GET", "/v1/status")["packs"] == 0
    assert owner.call("GET", f"/v1/packs/{pack}").status == 404


def test_commit_needs_tickets_for_exactly_those_fragments(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner = peers[3]
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    pack = fid("unticketed")
    frags = fragments(plan, pack)
    r = owner.call("POST", f"/v1/packs/{pack}/commit", commit_body(plan, frags))
    assert r.status == 409 and "ticket" in r.error
    owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})
    swapped = [dict(f, peer_id=frags[-1 - i]["peer_id"]) for i, f in enumerate(frags)]
    if swapped != frags:
        assert owner.call("POST", f"/v1/packs/{pack}/commit",
                          commit_body(plan, swapped)).status == 409
    # another user cannot commit this user's grants
    thief = peers[4]
    assert thief.call("POST", f"/v1/packs/{pack}/commit",
                      commit_body(plan, frags)).status == 409
    owner.ok("POST", f"/v1/packs/{pack}/commit", commit_body(plan, frags))


def test_tickets_refuse_caller_duplicates_and_unknown_peers(
        world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner = peers[0]
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    pack = fid("refused")
    frags = fragments(plan, pack)
    self_frag = [dict(frags[0], peer_id=owner.machine_id)]
    assert owner.call("POST", f"/v1/packs/{pack}/tickets",
                      {"fragments": self_frag}).status == 400
    twice = [frags[0], dict(frags[1], peer_id=frags[0]["peer_id"])]
    assert owner.call("POST", f"/v1/packs/{pack}/tickets", {"fragments": twice}).status == 400
    ghost = [dict(frags[0], peer_id="f" * 32)]
    assert owner.call("POST", f"/v1/packs/{pack}/tickets", {"fragments": ghost}).status == 409


def test_another_users_pack_is_404(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner, stranger = peers[4], peers[5]
    pack = fid("private")
    store_pack(owner, pack)
    r = stranger.call("GET", f"/v1/packs/{pack}")
    assert r.status == 404 and r.error
    assert stranger.ok("POST", "/v1/packs/exists", {"pack_ids": [pack]}) == {"present": []}


def test_not_enough_online_peers_is_409(tmp_path: Path) -> None:
    with coordinator(tmp_path) as server:
        solo = grid(server.api, "solo", 1)[0]
        r = solo.call("POST", "/v1/packs/plan", {"size": PACK_SIZE})
        assert (r.status, r.error) == (
            409, "not enough online peers (have 0, need 2): start more peers or wait")
        grid(server.api, "second", 1)
        assert "(have 1, need 2)" in solo.call("POST", "/v1/packs/plan",
                                               {"size": PACK_SIZE}).error
        tiny = {p.machine_id for p in grid(server.api, "tiny", 2, free=1000)}
        r = solo.call("POST", "/v1/packs/plan", {"size": PACK_SIZE})
        # online but no room on the tiny ones: suppliers are full (413), not missing (409)
        assert r.status == 413 and "suppliers are full" in r.error
        assert "only 1 have room" in r.error
        plan = solo.ok("POST", "/v1/packs/plan", {"size": 100})
        chosen = {p["peer_id"] for p in plan["peers"]}
        assert solo.machine_id not in chosen and chosen & tiny


def test_a_fragment_moved_to_a_spare_commits(world: tuple[Api, list[Api]]) -> None:
    _, peers = world
    owner = peers[5]
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    spares = plan["peers"][plan["n"]:]
    assert spares, plan
    pack = fid("moved")
    frags = fragments(plan, pack)
    owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})
    moved = dict(frags[0], peer_id=spares[0]["peer_id"])
    owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": [moved]})
    owner.ok("POST", f"/v1/packs/{pack}/commit", commit_body(plan, [moved, *frags[1:]]))
    got = owner.ok("GET", f"/v1/packs/{pack}")
    assert {f["index"]: f["peer_id"] for f in got["fragments"]}[0] == spares[0]["peer_id"]
