"""The network `Repository`: packs become erasure-coded fragments on other users' peers.

Metadata (snapshot records, indexes, the wrapped key) goes to the coordinator as opaque
encrypted blobs; pack fragments go directly between this machine and supplier peers, each
transfer carrying a ticket the coordinator signed. Nothing here ever sees plaintext.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from p2pbak.client import reroute
from p2pbak.datapath.erasure import decode_pack_parts, encode_pack, fragment_id
from p2pbak.errors import Frozen, P2pbakError, SuppliersFull, Unreachable
from p2pbak.net import proofs
from p2pbak.net.api import CoordinatorClient, CoordinatorError, PeerClient, PeerError
from p2pbak.store.cache import MetadataCache

log = logging.getLogger("p2pbak.netrepo")

ID_BATCH = 5000  # pack ids per garbage request
# After `success` fragments are stored, the rest get this share of the time taken so far
# before they are cancelled (the slow tail), so a healthy grid still stores all `total`.
TAIL_GRACE = 0.5
TAIL_GRACE_MIN = 0.2
# A fetch asks k holders first (the systematic fragments when they are online: their shares
# are the pack itself, no decode needed); others are asked when one fails, and
# `extra_fetch` more when the k are slow: once one has answered, the rest get as long again
# as it took (at least HEDGE); before any has, HEDGE_STALL (a hung holder, or k = 1).
HEDGE = 0.5
HEDGE_STALL = 10.0


@dataclass
class Stats:
    """What this repository moved (for the command summaries) and which peers failed it."""

    fragments_put: int = 0
    bytes_uploaded: int = 0
    fragments_cancelled: int = 0
    fragments_failed: int = 0
    fragments_rerouted: int = 0  # retried at a relayed peer's new relay (net/reroute)
    fragments_moved: int = 0  # sent to a spare peer instead of one that failed
    links_punched: int = 0  # direct links hole-punched to relayed peers (net/punch.py)
    bytes_downloaded: int = 0
    failed_peers: set[str] = field(default_factory=set)  # asked last until they answer
    metadata_fetched: int = 0  # index and snapshot blobs from the coordinator
    metadata_cached: int = 0  # ... and from the local cache


@dataclass
class _Upload:
    index: int
    fragment: bytes
    fid: str
    peer: dict[str, Any]
    ticket: str
    rerouted: bool = False  # retried once through the peer's new relay (net/reroute)
    root: str = ""  # the Merkle root audits check the holder against (net.proofs)


class NetworkRepository:
    """`datapath.repository.Repository` over a coordinator and supplier peers."""

    def __init__(self, coord: CoordinatorClient, peers: PeerClient, *, parallel: int = 16,
                 extra_fetch: int = 2, executor: Executor | None = None,
                 hedge: float = HEDGE) -> None:
        self.coord = coord
        self.peers = peers
        self.extra_fetch, self.hedge = extra_fetch, hedge
        self.stats = Stats()
        self._executor = executor
        self._slots = asyncio.Semaphore(parallel)
        self._known: set[str] = set()
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._flush: asyncio.Task[None] | None = None
        self.cache: MetadataCache | None = None  # set once the repository is known
        # check --read-data: fetch every fragment, not k, and note holders that answer wrong
        self.verify_every_fragment = False
        self.bad_holders: list[str] = []

    # -- packs: upload -------------------------------------------------------------------

    async def put_pack(self, pack_id: str, data: bytes) -> None:
        if pack_id in self._known:
            return
        plan = await self._plan(len(data), pack_id)
        k, n = int(plan["k"]), int(plan["n"])
        peers = list(plan["peers"])
        if len(peers) < n:
            raise P2pbakError(f"coordinator planned {n} fragments but named {len(peers)} peers")
        coded = await self._cpu(_encode, pack_id, data, k, n)
        uploads = [_Upload(i, f, fid, peers[i], "", root=root)
                   for i, (f, fid, root) in enumerate(coded)]
        tickets = await self.coord.tickets(pack_id, [_entry(u) for u in uploads])
        for u, t in zip(uploads, tickets, strict=True):
            u.ticket = t
        stored = await self._upload_all(pack_id, uploads, peers[n:], int(plan["success"]))
        await self.coord.commit(pack_id, k=k, n=n, repair=int(plan["repair"]),
                                success=int(plan["success"]), length=len(data),
                                fragments=[_entry(u) | {"merkle_root": u.root}
                                           for u in stored])
        self._known.add(pack_id)

    async def _plan(self, size: int, pack_id: str) -> dict[str, Any]:
        try:
            return await self.coord.plan(size, pack_id)
        except CoordinatorError as exc:
            if exc.status == 402:  # the bank refuses: account below its maximum deficit
                raise Frozen(str(exc)) from None
            if exc.status == 413:  # enough online, but too few with room for this pack
                raise SuppliersFull(str(exc)) from None
            if exc.status == 409:  # not enough online suppliers
                raise Unreachable(str(exc)) from None
            raise

    async def _upload_all(self, pack_id: str, uploads: list[_Upload],
                          spares: list[dict[str, Any]], success: int) -> list[_Upload]:
        """Upload every fragment at once (bounded); return those stored.

        Stops waiting once `success` are stored and the grace period is over; a failed
        fragment moves to a spare peer if the plan named any, else it is given up.
        """
        start = time.monotonic()
        stored: list[_Upload] = []
        why = ""
        tasks = {asyncio.create_task(self._put(u)): u for u in uploads}
        deadline: float | None = None
        try:
            while tasks:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(tasks, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break  # grace over: cancel the slow tail
                for task in done:
                    u = tasks.pop(task)
                    if task.exception() is None:
                        stored.append(u)
                        continue
                    self.stats.fragments_failed += 1
                    why = str(task.exception())
                    self.stats.failed_peers.add(u.peer["peer_id"])
                    retry = (await self._move_to_spare(pack_id, u, spares)
                             or await self._reroute(pack_id, u, task.exception()))
                    if retry is not None:
                        tasks[asyncio.create_task(self._put(retry))] = retry
                if deadline is None and len(stored) >= success:
                    spent = time.monotonic() - start
                    deadline = time.monotonic() + max(TAIL_GRACE_MIN, spent * TAIL_GRACE)
        finally:
            self.stats.fragments_cancelled += len(tasks)
            await _cancel(tasks)
        if len(stored) < success:
            raise Unreachable(f"pack {pack_id[:12]}: only {len(stored)} of {len(uploads)} "
                              f"fragments could be stored (need {success}; last refusal: "
                              f"{why}); too many supplier peers unreachable, try again later")
        return sorted(stored, key=lambda u: u.index)

    async def _put(self, u: _Upload) -> None:
        async with self._slots:
            await self.peers.put_fragment(u.peer["url"], u.fid, u.fragment, u.ticket)
        self.stats.failed_peers.discard(u.peer["peer_id"])
        self.stats.fragments_put += 1
        self.stats.bytes_uploaded += len(u.fragment)

    async def _move_to_spare(self, pack_id: str, u: _Upload,
                             spares: list[dict[str, Any]]) -> _Upload | None:
        if not spares:
            return None
        moved = _Upload(u.index, u.fragment, u.fid, spares.pop(0), "", root=u.root)
        (moved.ticket,) = await self.coord.tickets(pack_id, [_entry(moved)])
        self.stats.fragments_moved += 1
        return moved

    async def _reroute(self, pack_id: str, u: _Upload,
                       exc: BaseException | None) -> _Upload | None:
        """Once, a relayed peer at its new relay, with a fresh ticket (the old one may have
        been spent before the relay broke)."""
        if u.rerouted or exc is None or not reroute.worth_rerouting(u.peer["url"], exc):
            return None
        url = await reroute.new_url(self.coord, u.peer["peer_id"], u.peer["url"])
        if not url:
            return None
        moved = _Upload(u.index, u.fragment, u.fid, {**u.peer, "url": url}, "", rerouted=True,
                        root=u.root)
        (moved.ticket,) = await self.coord.tickets(pack_id, [_entry(moved)])
        self.stats.fragments_rerouted += 1
        return moved

    # -- packs: download -----------------------------------------------------------------

    async def get_pack(self, pack_id: str) -> bytes:
        return b"".join(await self.get_pack_parts(pack_id))

    async def get_pack_parts(self, pack_id: str) -> list[memoryview]:
        info = await self.coord.get_pack(pack_id)
        k = int(info["k"])
        candidates = sorted(info["fragments"], key=lambda f: self._fetch_order(f, k))
        got: list[str] = []
        if self.verify_every_fragment:
            frags = await self._fetch_every(pack_id, k, candidates, got)
        else:
            frags = await self._fetch_k(pack_id, k, candidates, got)
        await self._acknowledge(got)
        return await self._cpu(decode_pack_parts, pack_id, frags)

    async def _fetch_every(self, pack_id: str, k: int, candidates: list[dict[str, Any]],
                           acks: list[str]) -> list[bytes]:
        """Every fragment, each checked against its id; a holder that answers but wrongly
        (missing, corrupt bytes) is noted and reported to the coordinator, which checks it
        by its own challenge; an unreachable one is only offline."""
        results = await asyncio.gather(*(self._get(f) for f in candidates),
                                       return_exceptions=True)
        good: list[bytes] = []
        suspects = []
        for frag, res in zip(candidates, results, strict=True):
            if isinstance(res, bytes):
                good.append(res)
                acks.append(frag["ticket"])
            elif isinstance(res, PeerError) and res.status:
                self.bad_holders.append(f"pack {pack_id[:12]}: peer {frag['peer_id']} answered "
                                        f"wrong for fragment {frag['index']} ({res})")
                suspects.append({"fragment_id": frag["fragment_id"], "peer_id": frag["peer_id"]})
            elif isinstance(res, BaseException) and not isinstance(res, P2pbakError):
                raise res
        if suspects:
            try:
                await self.coord.call("POST", "/v1/suspects", {"fragments": suspects})
            except P2pbakError as exc:
                log.warning("could not report bad holders to the coordinator: %s", exc)
        if len(good) < k:
            raise Unreachable(f"pack {pack_id[:12]}: only {len(good)} of the {k} fragments "
                              "needed could be fetched; bring more peers online and retry")
        return good

    async def _acknowledge(self, wires: list[str]) -> None:
        """Tell the coordinator which fetches arrived whole, so their suppliers are paid
        (proof before pay); the restore goes on whatever the answer."""
        try:
            await self.coord.acks(wires)
        except P2pbakError as exc:
            log.debug("fetch acknowledgements not delivered: %s", exc)

    def _fetch_order(self, frag: dict[str, Any], k: int) -> tuple[bool, bool, bool]:
        """Online peers first and those that failed us last; among the rest the systematic
        fragments (index < k) first, then the coordinator's order, which is work
        allocation's (§2.4: lowest balance first; the sort is stable)."""
        return (not frag.get("online", True), frag["peer_id"] in self.stats.failed_peers,
                int(frag.get("index", k)) >= k)

    async def _fetch_k(self, pack_id: str, k: int, candidates: list[dict[str, Any]],
                       acks: list[str]) -> list[bytes]:
        """Ask k peers, start another per failure and `extra_fetch` more when the k are
        slow (see HEDGE); keep the first k good (their tickets go to `acks`)."""
        queue = list(candidates)
        got: list[bytes] = []
        failures: list[str] = []
        tasks: dict[asyncio.Task[bytes], dict[str, Any]] = {}

        def launch(count: int) -> None:
            for _ in range(count):
                if queue:
                    frag = queue.pop(0)
                    tasks[asyncio.create_task(self._get(frag))] = frag

        launch(k)
        start = time.monotonic()
        deadline: float | None = start + max(self.hedge, HEDGE_STALL)
        try:
            while tasks and len(got) < k:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=timeout)
                if not done:
                    deadline = None  # hedged once
                    launch(self.extra_fetch)
                    continue
                if deadline is not None and not got and any(
                        t.exception() is None for t in done):
                    spent = time.monotonic() - start
                    deadline = time.monotonic() + max(self.hedge, spent)
                for task in done:
                    frag = tasks.pop(task)
                    exc = task.exception()
                    if exc is None:
                        got.append(task.result())
                        acks.append(frag["ticket"])
                        continue
                    failures.append(f"{frag.get('url', '?')}: {exc}")
                    self.stats.failed_peers.add(frag["peer_id"])
                    launch(1)
        finally:
            await _cancel(tasks)
        if len(got) < k:
            why = failures[-1] if failures else "no fragments placed"
            raise Unreachable(f"pack {pack_id[:12]}: only {len(got)} of the {k} fragments "
                              f"needed could be fetched ({why}); bring more peers online "
                              "and retry")
        return got

    async def _get(self, frag: dict[str, Any]) -> bytes:
        async with self._slots:
            # get_fragment checks the bytes against the fragment id (BLAKE3)
            data = await self.peers.get_fragment(frag["url"], frag["fragment_id"],
                                                 frag["ticket"])
        self.stats.failed_peers.discard(frag["peer_id"])
        self.stats.bytes_downloaded += len(data)
        return data

    # -- packs: existence, batched ---------------------------------------------------------

    async def has_pack(self, pack_id: str) -> bool:
        if pack_id in self._known:
            return True
        fut = self._pending.get(pack_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._pending[pack_id] = fut
            if self._flush is None:
                self._flush = asyncio.create_task(self._flush_exists())
        return await fut

    async def has_packs(self, pack_ids: Sequence[str]) -> set[str]:
        """Which of `pack_ids` are committed for this user (one request)."""
        present = set(await self.coord.packs_exist(list(pack_ids)))
        self._known |= present
        return present

    async def _flush_exists(self) -> None:
        await asyncio.sleep(0)  # let concurrent callers join this batch
        batch, self._pending, self._flush = self._pending, {}, None
        try:
            present = await self.has_packs(list(batch))
        except BaseException as exc:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(exc)
            return
        for pid, fut in batch.items():
            if not fut.done():
                fut.set_result(pid in present)

    # -- metadata: opaque encrypted blobs on the coordinator --------------------------------

    # With a local cache (store.cache) a blob is fetched once: later runs read it from disk.

    async def put_snapshot(self, snapshot_id: str, blob: bytes) -> None:
        await self.coord.put_snapshot(snapshot_id, blob)
        self._cache_put("snapshot", snapshot_id, blob)

    async def get_snapshot(self, snapshot_id: str) -> bytes:
        return await self._cached("snapshot", snapshot_id, self.coord.get_snapshot)

    async def list_snapshots(self) -> list[str]:
        ids = [s["id"] for s in await self.coord.list_snapshots()]
        if self.cache is not None:
            self.cache.retain("snapshot", ids)
        return ids

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self.coord.delete_snapshot(snapshot_id)
        if self.cache is not None:
            self.cache.delete("snapshot", snapshot_id)

    async def put_index(self, index_id: str, blob: bytes) -> None:
        await self.coord.put_index(index_id, blob)
        self._cache_put("index", index_id, blob)

    async def get_index(self, index_id: str) -> bytes:
        return await self._cached("index", index_id, self.coord.get_index)

    async def list_indexes(self) -> list[str]:
        ids = [i["id"] for i in await self.coord.list_indexes()]
        if self.cache is not None:
            self.cache.retain("index", ids)
        return ids

    async def _cached(self, kind: str, blob_id: str,
                      fetch: Callable[[str], Awaitable[bytes]]) -> bytes:
        if self.cache is not None:
            found = self.cache.get(kind, blob_id)
            if found is not None:
                self.stats.metadata_cached += 1
                return found
        blob = await fetch(blob_id)
        self.stats.metadata_fetched += 1
        self._cache_put(kind, blob_id, blob)
        return blob

    def _cache_put(self, kind: str, blob_id: str, blob: bytes) -> None:
        if self.cache is not None:
            self.cache.put(kind, blob_id, blob)

    async def get_keyfile(self) -> bytes:
        return await self.coord.get_keyfile()

    async def put_keyfile(self, blob: bytes) -> None:
        await self.coord.put_keyfile(blob)

    async def delete_index(self, index_id: str) -> None:
        await self.coord.delete_index(index_id)
        if self.cache is not None:
            self.cache.delete("index", index_id)

    # -- garbage: what the coordinator holds for this user (prune, check) -----------------

    async def list_packs(self) -> dict[str, int]:
        """Every pack committed for this user → its length in bytes."""
        body = await self.coord.call("GET", "/v1/packs")
        return {str(p["id"]): int(p["length"]) for p in body.get("packs", [])}

    async def pack_placements(self, pack_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """pack id → {"k", "n", "placed", "online"} for those of `pack_ids` committed."""
        out: dict[str, dict[str, int]] = {}
        ids = list(pack_ids)
        for start in range(0, len(ids), ID_BATCH):
            body = await self.coord.call("POST", "/v1/packs/placements",
                                         {"pack_ids": ids[start:start + ID_BATCH]})
            out.update({str(p["id"]): {k: int(p[k]) for k in ("k", "n", "placed", "online")}
                        for p in body.get("packs", [])})
        return out

    async def drop_packs(self, pack_ids: Sequence[str]) -> dict[str, int]:
        """Drop packs: their fragments go on the suppliers' delete lists. → totals."""
        totals = {"packs": 0, "fragments": 0, "bytes": 0, "fragment_bytes": 0}
        ids = list(pack_ids)
        for start in range(0, len(ids), ID_BATCH):
            body = await self.coord.call("POST", "/v1/packs/drop",
                                         {"pack_ids": ids[start:start + ID_BATCH]})
            for key in totals:
                totals[key] += int(body.get(key, 0))
        self._known.difference_update(ids)
        return totals

    # -- helpers ----------------------------------------------------------------------------

    async def _cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        """CPU-heavy work (erasure coding) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _encode(pack_id: str, data: bytes, k: int, n: int) -> list[tuple[bytes, str, str]]:
    """The n fragments, their ids and Merkle roots (CPU work, done together off the loop)."""
    return [(f, fragment_id(f), proofs.root(f)) for f in encode_pack(pack_id, data, k, n)]


def _entry(u: _Upload) -> dict[str, Any]:
    return {"index": u.index, "fragment_id": u.fid, "size": len(u.fragment),
            "peer_id": u.peer["peer_id"]}


async def _cancel(tasks: dict[asyncio.Task[Any], Any] | Sequence[Awaitable[Any]]) -> None:
    for task in tasks:
        if isinstance(task, asyncio.Task):
            task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
