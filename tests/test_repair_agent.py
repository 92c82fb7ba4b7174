"""The agent side of repair and audits: rebuilding is bit-exact, bad sources are skipped."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.datapath.erasure import encode_pack, fragment_id
from p2pbak.net.api import CoordinatorClient, PeerClient
from p2pbak.peer.tasks import Repairer, _audit
from tests.peer_helpers import serve_peer


def repairer(pack_id: str, k: int, n: int, missing: list[int], known: dict[int, str],
             sources: list[dict[str, Any]] | None = None) -> Repairer:
    task = {"task_id": 1, "pack_id": pack_id, "k": k, "n": n, "missing": missing,
            "fragment_ids": {str(i): f for i, f in known.items()}, "sources": sources or []}
    return Repairer(CoordinatorClient("http://127.0.0.1:9"), PeerClient(), task)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=20_000), st.integers(1, 8), st.integers(0, 8),
       st.randoms(use_true_random=False))
def test_rebuilt_fragments_are_the_lost_ones_bit_for_bit(data: bytes, k: int, extra: int,
                                                         rng: random.Random) -> None:
    n = k + max(1, extra)
    pack_id = blake3.blake3(data).hexdigest()
    every = encode_pack(pack_id, data, k, n)
    kept = rng.sample(range(n), k)
    missing = sorted(rng.sample([i for i in range(n) if i not in kept],
                                rng.randint(1, n - k)))
    known = {i: fragment_id(f) for i, f in enumerate(every)}
    rebuilt = repairer(pack_id, k, n, missing, known)._rebuild([every[i] for i in kept])
    assert rebuilt == {i: every[i] for i in missing}


def test_a_rebuild_that_disagrees_with_the_recorded_id_is_refused() -> None:
    data = random.Random(1).randbytes(5000)
    pack_id = blake3.blake3(data).hexdigest()
    every = encode_pack(pack_id, data, 2, 4)
    r = repairer(pack_id, 2, 4, [3], {3: "0" * 64})
    try:
        r._rebuild(every[:2])
    except Exception as exc:
        assert "does not match" in str(exc)
    else:
        raise AssertionError("a rebuild with the wrong id was accepted")


def test_fetch_skips_missing_corrupt_and_foreign_fragments(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(30_000)
    pack_id = blake3.blake3(data).hexdigest()
    every = encode_pack(pack_id, data, 2, 6)
    other = random.Random(3).randbytes(30_000)
    foreign = encode_pack(blake3.blake3(other).hexdigest(), other, 2, 6)[1]

    async def scenario() -> None:
        async with serve_peer(tmp_path / "a") as a, serve_peer(tmp_path / "b", a.key) as b:
            a.store.put(fragment_id(every[0]), every[0])
            rotten = a.store.path(fragment_id(every[1]))
            rotten.parent.mkdir(parents=True, exist_ok=True)
            rotten.write_bytes(every[1][:-1] + bytes([every[1][-1] ^ 1]))
            b.store.put(fragment_id(foreign), foreign)
            b.store.put(fragment_id(every[4]), every[4])
            b.store.put(fragment_id(every[5]), every[5])

            def source(peer: Any, index: int, frag: bytes) -> dict[str, Any]:
                fid = fragment_id(frag)
                return {"index": index, "fragment_id": fid, "size": len(frag),
                        "url": peer.url, "ticket": peer.ticket("fetch", fid, len(frag))}

            sources = [source(a, 1, every[1]), source(b, 1, foreign),
                       source(a, 3, every[3]), source(a, 0, every[0]),
                       source(b, 4, every[4]), source(b, 5, every[5])]
            r = repairer(pack_id, 2, 6, [1, 2, 3], {}, sources)
            try:
                got = await r._fetch_k()
                assert sorted(got) == sorted([every[0], every[4]])
                rebuilt = r._rebuild(got)
                assert rebuilt == {i: every[i] for i in (1, 2, 3)}
                audit = {"fragment_id": fragment_id(every[1]), "size": len(every[1]),
                         "url": a.url}
                ticket = a.ticket("fetch", audit["fragment_id"], audit["size"])
                assert (await _audit(r.peers, {**audit, "ticket": ticket}))["outcome"] == \
                    "failed"  # the rotten copy was removed: a missing fragment fails
                fid0 = fragment_id(every[0])
                ok = {"fragment_id": fid0, "size": len(every[0]), "url": a.url,
                      "ticket": a.ticket("fetch", fid0, len(every[0]))}
                assert (await _audit(r.peers, ok))["outcome"] == "ok"
                gone = {**ok, "url": "http://127.0.0.1:9",
                        "ticket": a.ticket("fetch", fid0, len(every[0]))}
                assert (await _audit(r.peers, gone))["outcome"] == "offline"
            finally:
                await r.peers.close()
                await r.coord.close()

    asyncio.run(scenario())
