"""The task routes of a real `p2pbak serve`: validation, and a repair driven over HTTP.

Fake peers speak the API as peer agents would (heartbeats, polls, reports); nothing is
mocked. One holder of a committed pack stops heartbeating, the checker queues a repair,
a non-holder polls it, gets store tickets and reports, and the owner sees the move.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pbak.net import tickets
from tests.test_coordinator_support import Api, coordinator, fid, grid, store_pack

SERVE = ("--online-window", "3", "--departure-timeout", "3", "--checker-interval", "0.5",
         "--audit-interval", "3600")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, list[Api]]]:
    with coordinator(tmp_path_factory.mktemp("tasks"), *SERVE) as server:
        yield server.api, grid(server.api, "peer", 7)


def test_bad_task_requests_are_4xx_with_a_message(world: tuple[Api, list[Api]]) -> None:
    api, peers = world
    me = peers[0]
    assert api.call("POST", "/v1/tasks/poll", {}).status == 401
    r = me.call("POST", "/v1/tasks/poll", {"greedy": True})
    assert r.status == 400 and "unknown field" in r.error
    for path in ("/v1/tasks/abc/report", "/v1/tasks/-1/report", "/v1/tasks/1e3/tickets"):
        r = me.call("POST", path, {"outcome": "ok"})
        assert r.status in (400, 404) and r.error
    r = me.call("POST", "/v1/tasks/999999/report", {"outcome": "ok"})
    assert r.status == 404 and "poll" in r.error
    r = me.call("POST", "/v1/tasks/999999/tickets",
                {"fragments": [{"index": 0, "fragment_id": fid("x"), "size": 1}]})
    assert r.status == 404


def _beat(peers: list[Api], skip: str) -> None:
    for i, p in enumerate(peers):
        if p.machine_id != skip:
            p.heartbeat(f"http://127.0.0.{i % 250 + 2}:{9000 + i}")


def _poll_repair(peers: list[Api], candidates: list[Api], gone: str) -> tuple[Api, dict]:
    """Heartbeat the live peers and poll until one of `candidates` gets the repair
    (other tasks, e.g. tests of the fake peers, are reported offline)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _beat(peers, gone)
        for peer in candidates:
            task = peer.ok("POST", "/v1/tasks/poll", {})["task"]
            if task is None:
                continue
            if task["kind"] == "repair":
                return peer, task
            peer.ok("POST", f"/v1/tasks/{task['task_id']}/report", {"outcome": "offline"})
        time.sleep(0.3)
    raise AssertionError("no repair task was handed out")


def test_a_repair_over_http_moves_the_placement(world: tuple[Api, list[Api]]) -> None:
    api, peers = world
    owner = peers[0]
    pack = fid("repaired")
    stored = store_pack(owner, pack)
    plan, frags = stored["plan"], stored["all"]
    holders = {f["peer_id"] for f in frags}
    gone = frags[0]["peer_id"]
    others = [p for p in peers if p.machine_id not in holders | {owner.machine_id}]
    assert others, "the test needs a peer that holds nothing"
    worker, task = _poll_repair(peers, others, gone)
    assert task["pack_id"] == pack and task["missing"] == [0]
    assert gone not in {s["peer_id"] for s in task["sources"]}
    assert len(task["sources"]) >= plan["k"]
    base = f"/v1/tasks/{task['task_id']}"
    size = frags[0]["size"]
    r = worker.call("POST", f"{base}/tickets",
                    {"fragments": [{"index": 0, "fragment_id": fid("forged"), "size": size}]})
    assert r.status == 400 and "does not match" in r.error
    intruder = next(p for p in peers if p.machine_id != worker.machine_id)
    assert intruder.call("POST", f"{base}/report", {"outcome": "ok"}).status == 404
    answer = worker.ok("POST", f"{base}/tickets", {"fragments": [
        {"index": 0, "fragment_id": frags[0]["fragment_id"], "size": size}]})
    (target,) = answer["targets"]
    assert target["peer_id"] not in holders | {owner.machine_id}
    key = tickets.load_public_key(api.ok("GET", "/v1/health")["ticket_key"])
    t = tickets.verify(key, target["ticket"], op="store", fragment=frags[0]["fragment_id"],
                       to=target["peer_id"])
    assert t.from_ == worker.machine_id
    stored: list[dict[str, Any]] = [{k: target[k] for k in
                                     ("index", "fragment_id", "size", "peer_id")}]
    assert worker.ok("POST", f"{base}/report", {"outcome": "ok", "stored": stored})[
        "moved"] == 1
    assert worker.call("POST", f"{base}/report", {"outcome": "ok"}).status == 409
    placed = {f["index"]: f["peer_id"] for f in owner.ok("GET", f"/v1/packs/{pack}")[
        "fragments"]}
    assert placed[0] == target["peer_id"]
    assert set(placed.values()) == (holders - {gone}) | {target["peer_id"]}


def test_the_serve_options_are_documented(tmp_path: Path) -> None:
    from p2pbak.localgrid.grid import run_cli

    text = " ".join(run_cli(["serve", "--help"]).stdout.split())
    for option in ("--checker-interval", "--departure-timeout", "--audit-interval",
                   "--availability-window"):
        assert option in text
