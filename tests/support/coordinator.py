"""Helpers for the coordinator tests: a real `p2pbak serve` process and a tiny HTTP client.

Fake peers are registered through the HTTP API exactly as a machine would (POST /v1/peer and
/v1/heartbeat with made-up URLs): that drives the real server, nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from p2pbak.localgrid.grid import Process, free_port, serve

__test__ = False

PACK_SIZE = 1_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def fid(seed: str) -> str:
    """A made-up fragment or pack id."""
    return hashlib.sha256(seed.encode()).hexdigest()


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def error(self) -> str:
        assert isinstance(self.body, dict), self.body
        return str(self.body.get("error", ""))


class Api:
    """One coordinator, spoken to over real HTTP."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = url
        self.token = token

    def as_(self, token: str) -> Api:
        return Api(self.url, token)

    def raw(self, method: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> Reply:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return Reply(resp.status, body)

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        return self.raw(method, path, data)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        r = self.call(method, path, body)
        assert 200 <= r.status < 300, (method, path, r)
        return r.body

    # -- identity, as `p2pbak init` would register -------------------------------------

    def register(self, user: str, login_key: bytes = b"k" * 32, keyfile: bytes = b"wrapped",
                 machine: str = "laptop") -> Api:
        body = self.ok("POST", "/v1/users", {
            "user": user, "salt": b64(b"s" * 16), "login_key": b64(login_key),
            "keyfile": b64(keyfile), "machine": machine})
        return self.as_(f"{body['machine_id']}.{body['secret']}")

    @property
    def machine_id(self) -> str:
        return self.token.split(".", 1)[0]

    # -- a peer agent, as `p2pbak peer run` would announce itself ----------------------

    def announce(self, url: str, free: int = 10**9) -> None:
        self.ok("POST", "/v1/peer", {"url": url, "space": free, "upload": 10**6,
                                     "download": 10**6})
        self.heartbeat(url, free=free)

    def heartbeat(self, url: str, free: int = 10**9, stored: int = 0) -> None:
        self.ok("POST", "/v1/heartbeat", {"url": url, "stored_bytes": stored,
                                          "free_bytes": free})


def grid(api: Api, prefix: str, peers: int, free: int = 10**9) -> list[Api]:
    """`peers` users, each with one announced, heartbeating peer on a made-up address."""
    out = []
    for i in range(peers):
        member = api.register(f"{prefix}{i}")
        member.announce(f"http://127.0.0.{i % 250 + 2}:{9000 + i}", free=free)
        out.append(member)
    return out


def fragments(plan: dict[str, Any], pack: str, count: int | None = None) -> list[dict]:
    """Fragments 0.. of `pack` on the plan's first `count` (default n) peers."""
    chosen = plan["peers"][: plan["n"] if count is None else count]
    return [{"index": i, "fragment_id": fid(f"{pack}/{i}"), "size": plan["fragment_size"],
             "peer_id": p["peer_id"]} for i, p in enumerate(chosen)]


def commit_body(plan: dict[str, Any], frags: list[dict]) -> dict[str, Any]:
    return {k: plan[k] for k in ("k", "n", "repair", "success")} | {
        "length": PACK_SIZE, "fragments": frags}


def store_pack(owner: Api, pack: str, stored: int | None = None) -> dict[str, Any]:
    """Plan, take tickets for all n fragments, commit the first `stored` (default all)."""
    plan = owner.ok("POST", "/v1/packs/plan", {"size": PACK_SIZE})
    frags = fragments(plan, pack)
    owner.ok("POST", f"/v1/packs/{pack}/tickets", {"fragments": frags})
    keep = frags[:plan["n"] if stored is None else stored]
    owner.ok("POST", f"/v1/packs/{pack}/commit", commit_body(plan, keep))
    return {"plan": plan, "all": frags, "kept": keep}


@dataclass
class Server:
    api: Api
    proc: Process
    db: Path | str  # an SQLite file or a postgresql:// URL


@contextlib.contextmanager
def coordinator(tmp: Path, *extra: str, db: Path | str | None = None) -> Iterator[Server]:
    """`p2pbak serve` on a free loopback port, stopped (SIGTERM) on exit."""
    port = free_port()
    db = db or tmp / "coordinator.db"
    proc = serve(db, port, tmp / f"serve-{port}.log", extra)
    try:
        yield Server(Api(proc.url), proc, db)
    finally:
        proc.stop()


def path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)
