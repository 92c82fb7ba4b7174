"""NetworkRepository's scheduling: slow tail cancelled, spares used, fetch falls back,
existence checks batched. The HTTP clients are replaced by in-memory stand-ins that
behave like the real ones (same methods, same errors); the grid tests cover the wire."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.client.netrepo import NetworkRepository
from p2pbak.datapath.erasure import encode_pack, fragment_id
from p2pbak.errors import Frozen, Unreachable
from p2pbak.net.api import CoordinatorError, PeerError


class Coordinator:
    def __init__(self, k: int, n: int, spares: int = 0, success: int | None = None) -> None:
        self.k, self.n, self.spares = k, n, spares
        self.success = success if success is not None else k + 1
        self.committed: dict[str, dict[str, Any]] = {}
        self.acked: list[str] = []  # fetch tickets the repository acknowledged
        self.exists_calls: list[list[str]] = []
        self.frozen = False

    async def acks(self, wires: list[str]) -> dict[str, Any]:
        self.acked.extend(wires)
        return {"acknowledged": len(wires), "paid": 0, "refused": []}

    async def plan(self, size: int, pack_id: str | None = None) -> dict[str, Any]:
        if self.frozen:
            raise CoordinatorError("account frozen", 402)
        peers = [{"peer_id": f"p{i}", "url": f"http://p{i}"} for i in range(self.n + self.spares)]
        return {"k": self.k, "n": self.n, "repair": self.k, "success": self.success,
                "total": self.n, "peers": peers}

    async def tickets(self, pack_id: str, frags: list[dict[str, Any]]) -> list[str]:
        return [f"t-{f['fragment_id']}-{f['peer_id']}" for f in frags]

    async def commit(self, pack_id: str, **body: Any) -> None:
        self.committed[pack_id] = body

    async def get_pack(self, pack_id: str) -> dict[str, Any]:
        body = self.committed[pack_id]
        return {"k": body["k"], "n": body["n"], "fragments": [
            {**f, "url": f"http://{f['peer_id']}", "online": True,
             "ticket": f"t-{f['fragment_id']}-{f['peer_id']}"} for f in body["fragments"]]}

    async def packs_exist(self, ids: list[str]) -> set[str]:
        self.exists_calls.append(list(ids))
        return set(ids) & set(self.committed)


class Peers:
    """Peers in memory; `hang` never answer, `down` refuse at once."""

    def __init__(self, hang: set[str] = frozenset(), down: set[str] = frozenset()) -> None:
        self.store: dict[tuple[str, str], bytes] = {}
        self.hang, self.down = set(hang), set(down)
        self.cancelled = 0

    async def _behave(self, url: str) -> None:
        if url in self.down:
            raise PeerError(f"cannot reach peer {url}")
        if url in self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def put_fragment(self, url: str, fid: str, data: bytes, ticket: str) -> None:
        await self._behave(url)
        assert ticket == f"t-{fid}-{url.removeprefix('http://')}"
        self.store[(url, fid)] = data

    async def get_fragment(self, url: str, fid: str, ticket: str) -> bytes:
        await self._behave(url)
        data = self.store.get((url, fid))
        if data is None or blake3.blake3(data).hexdigest() != fid:
            raise PeerError(f"peer {url} does not hold fragment {fid[:12]}", 404)
        return data


def _pack(size: int = 50_000) -> tuple[str, bytes]:
    data = os.urandom(size)
    return blake3.blake3(data).hexdigest(), data


def test_slow_tail_is_cancelled_once_success_is_stored() -> None:
    coord, peers = Coordinator(k=3, n=8, success=6), Peers(hang={"http://p6", "http://p7"})
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack()
    asyncio.run(repo.put_pack(pid, data))
    stored = coord.committed[pid]["fragments"]
    assert sorted(f["peer_id"] for f in stored) == [f"p{i}" for i in range(6)]
    assert peers.cancelled == 2 and repo.stats.fragments_cancelled == 2


def test_failed_fragment_moves_to_a_spare() -> None:
    coord, peers = Coordinator(k=2, n=5, spares=1, success=5), Peers(down={"http://p1"})
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack()
    asyncio.run(repo.put_pack(pid, data))
    stored = {f["index"]: f["peer_id"] for f in coord.committed[pid]["fragments"]}
    assert stored == {0: "p0", 1: "p5", 2: "p2", 3: "p3", 4: "p4"}


def test_too_few_stored_is_unreachable_and_nothing_committed() -> None:
    coord = Coordinator(k=2, n=5, success=4)
    peers = Peers(down={"http://p0", "http://p1"})
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack()
    with pytest.raises(Unreachable, match="only 3 of 5"):
        asyncio.run(repo.put_pack(pid, data))
    assert coord.committed == {}


def test_frozen_account_is_exit_13() -> None:
    coord = Coordinator(k=2, n=4)
    coord.frozen = True
    repo = NetworkRepository(coord, Peers())  # type: ignore[arg-type]
    with pytest.raises(Frozen):
        asyncio.run(repo.put_pack(*_pack()))


@settings(max_examples=25, deadline=None)
@given(down=st.sets(st.integers(0, 7), max_size=5), extra=st.integers(0, 3))
def test_get_pack_survives_any_n_minus_k_peers_down(down: set[int], extra: int) -> None:
    coord, peers = Coordinator(k=3, n=8, success=8), Peers()
    repo = NetworkRepository(coord, peers, extra_fetch=extra)  # type: ignore[arg-type]
    pid, data = _pack(20_000)
    asyncio.run(repo.put_pack(pid, data))
    peers.down = {f"http://p{i}" for i in down}
    assert asyncio.run(repo.get_pack(pid)) == data


def test_get_pack_skips_corrupt_and_hanging_peers_and_cancels_the_rest() -> None:
    coord, peers = Coordinator(k=3, n=8, success=8), Peers()
    repo = NetworkRepository(coord, peers, extra_fetch=2)  # type: ignore[arg-type]
    pid, data = _pack()
    asyncio.run(repo.put_pack(pid, data))
    for (url, fid), frag in list(peers.store.items()):
        if url in ("http://p0", "http://p1"):
            peers.store[(url, fid)] = frag[:-1] + bytes([frag[-1] ^ 1])
    peers.hang = {"http://p2"}
    repo.stats.failed_peers.clear()  # ask in the coordinator's order: p0..p4 first
    assert asyncio.run(repo.get_pack(pid)) == data
    assert peers.cancelled == 1  # the hanging peer was given up once k arrived
    # only the k fetches that arrived whole are acknowledged (their suppliers get paid)
    assert len(coord.acked) >= 3
    assert not [t for t in coord.acked if t.endswith(("-p0", "-p1", "-p2"))]


def test_get_pack_with_fewer_than_k_is_unreachable() -> None:
    coord, peers = Coordinator(k=3, n=5, success=5), Peers()
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack()
    asyncio.run(repo.put_pack(pid, data))
    peers.down = {f"http://p{i}" for i in range(3)}
    with pytest.raises(Unreachable, match="only 2 of the 3"):
        asyncio.run(repo.get_pack(pid))


def test_concurrent_has_pack_calls_share_one_request() -> None:
    coord, peers = Coordinator(k=2, n=4, success=4), Peers()
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    known, data = _pack()

    async def scenario() -> list[bool]:
        await repo.put_pack(known, data)
        fresh = NetworkRepository(coord, peers)  # type: ignore[arg-type]
        ids = [known] + [_pack(10)[0] for _ in range(5)]
        return list(await asyncio.gather(*(fresh.has_pack(i) for i in ids)))

    assert asyncio.run(scenario()) == [True] + [False] * 5
    assert len(coord.exists_calls) == 1 and len(coord.exists_calls[0]) == 6


def test_fragments_are_the_data_paths() -> None:
    """The repository stores exactly what encode_pack makes, under their ids."""
    coord, peers = Coordinator(k=2, n=4, success=4), Peers()
    repo = NetworkRepository(coord, peers)  # type: ignore[arg-type]
    pid, data = _pack()
    asyncio.run(repo.put_pack(pid, data))
    assert {fragment_id(f) for f in encode_pack(pid, data, 2, 4)} == {
        fid for _, fid in peers.store}


def test_a_failed_peer_is_asked_last_for_the_next_pack() -> None:
    coord, peers = Coordinator(k=2, n=6, success=6), Peers()
    repo = NetworkRepository(coord, peers, extra_fetch=0)  # type: ignore[arg-type]
    packs = [_pack(5_000) for _ in range(2)]
    asyncio.run(_put_all(repo, packs))
    peers.down = {"http://p0"}
    assert asyncio.run(repo.get_pack(packs[0][0])) == packs[0][1]
    asked: list[str] = []
    real_get = peers.get_fragment

    async def spy(url: str, fid: str, ticket: str) -> bytes:
        asked.append(url)
        return await real_get(url, fid, ticket)

    peers.get_fragment = spy  # type: ignore[method-assign]
    assert asyncio.run(repo.get_pack(packs[1][0])) == packs[1][1]
    assert "http://p0" not in asked and len(asked) == 2


async def _put_all(repo: NetworkRepository, packs: list[tuple[str, bytes]]) -> None:
    for pid, data in packs:
        await repo.put_pack(pid, data)
