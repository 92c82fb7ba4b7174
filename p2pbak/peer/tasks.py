"""The peer agent's task loop: poll the coordinator, run repairs, audits and tests, report.

One task at a time, between the agent's other work. A repair fetches k fragments of a pack
(ciphertext: no key involved), decodes and re-encodes it at the same k/n, which gives the
missing fragments bit for bit, and stores them on the suppliers the coordinator names. An
audit or a test fetch checks the bytes against the fragment id. Outcomes: "ok", "failed"
(the peer answered wrongly) or "offline" (it could not be reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from p2pbak.datapath.erasure import CorruptFragment, decode_pack, encode_pack, fragment_id
from p2pbak.datapath.erasure import parse_fragment as parse_header
from p2pbak.errors import P2pbakError
from p2pbak.net.api import CoordinatorClient, CoordinatorError, PeerClient, PeerError
from p2pbak.net.probes import test_fragment

if TYPE_CHECKING:
    from p2pbak.peer.agent import AgentContext

log = logging.getLogger("p2pbak.peer")

STORE_ROUNDS = 3  # ticket requests per repair: failed suppliers are excluded next round

Report = dict[str, Any]


def task_worker(interval: float) -> Callable[[AgentContext], Awaitable[None]]:
    """The agent worker that runs tasks, polling every `interval` seconds while idle."""

    async def run_tasks(ctx: AgentContext) -> None:
        await TaskLoop(ctx.coord, ctx.peers, interval).run()

    return run_tasks


def outcome_of(exc: PeerError) -> str:
    return "offline" if exc.status == 0 else "failed"


class TaskLoop:
    """Polls every `interval` seconds while idle; runs tasks back to back while there are."""

    def __init__(self, coord: CoordinatorClient, peers: PeerClient, interval: float) -> None:
        self.coord, self.peers = coord, peers
        self.interval = interval
        self.done = 0

    async def run(self) -> None:
        while True:
            task = await self._poll()
            if task is None:
                await asyncio.sleep(self.interval)
                continue
            await self._report(task, await self.run_task(task))
            self.done += 1

    async def _poll(self) -> dict[str, Any] | None:
        try:
            task = (await self.coord.call("POST", "/v1/tasks/poll", {})).get("task")
        except P2pbakError:
            return None  # the heartbeat loop logs the coordinator's absence
        return task if isinstance(task, dict) else None

    async def run_task(self, task: dict[str, Any]) -> Report:
        kind = task.get("kind")
        try:
            if kind == "repair":
                return await Repairer(self.coord, self.peers, task).run()
            if kind == "audit":
                return await _prove(self.peers, task)
            if kind == "test-store":
                return await _test_store(self.peers, task)
            if kind == "test-fetch":
                return await self._acked(task, await _test_fetch(self.peers, task))
        except (P2pbakError, KeyError, ValueError, TypeError) as exc:
            log.warning("task %s (%s) failed: %s", task.get("task_id"), kind, exc)
            return {"outcome": "failed", "detail": str(exc)[:1000]}
        return {"outcome": "failed", "detail": f"unknown task kind {kind!r}"}

    async def _acked(self, task: dict[str, Any], report: Report) -> Report:
        """A fetch that arrived whole is acknowledged, so its supplier is paid."""
        if report.get("outcome") == "ok":
            await acknowledge(self.coord, [str(task["ticket"])])
        return report

    async def _report(self, task: dict[str, Any], report: Report) -> None:
        """Hand the outcome in; while the coordinator is away, retry until the lease lapses
        (then the task runs again elsewhere and this report would be refused anyway)."""
        path = f"/v1/tasks/{int(task['task_id'])}/report"
        give_up = time.monotonic() + float(task.get("lease", 60))
        delay = min(1.0, self.interval)
        while True:
            try:
                await self.coord.call("POST", path, report)
                return
            except CoordinatorError as exc:
                log.warning("report of task %s refused: %s", task["task_id"], exc)
                return
            except P2pbakError:
                if time.monotonic() + delay > give_up:
                    log.warning("could not report task %s: it will run again",
                                task["task_id"])
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


async def acknowledge(coord: CoordinatorClient, wires: list[str]) -> None:
    """Best effort: the coordinator pays a fetch's supplier once its receiver says so."""
    try:
        await coord.acks(wires)
    except P2pbakError as exc:
        log.debug("fetch acknowledgements not delivered: %s", exc)


# -- audits and tests ----------------------------------------------------------------

async def _audit(peers: PeerClient, task: dict[str, Any]) -> Report:
    fid = str(task["fragment_id"])
    try:
        data = await peers.get_fragment(task["url"], fid, task["ticket"],
                                        max_size=int(task["size"]))
    except PeerError as exc:
        return {"outcome": outcome_of(exc), "detail": str(exc)[:1000]}
    if len(data) != int(task["size"]):
        return {"outcome": "failed", "detail": f"fragment {fid[:12]} has the wrong size"}
    return {"outcome": "ok"}


async def _prove(peers: PeerClient, task: dict[str, Any]) -> Report:
    """Relay the coordinator's challenge to the holder; hand its answer in unchecked (the
    coordinator verifies it against the committed root)."""
    fid = str(task["fragment_id"])
    try:
        answer = await peers.prove_fragment(task["url"], fid, task["ticket"],
                                            task["challenge"])
    except PeerError as exc:
        return {"outcome": outcome_of(exc), "detail": str(exc)[:1000]}
    return {"outcome": "ok", "proofs": answer.get("proofs", [])[:64]}


async def _test_store(peers: PeerClient, task: dict[str, Any]) -> Report:
    data = test_fragment(bytes.fromhex(task["seed"]), int(task["size"]))
    if fragment_id(data) != task["fragment_id"]:
        return {"outcome": "failed", "detail": "test fragment does not match its id"}
    try:
        await peers.put_fragment(task["url"], task["fragment_id"], data, task["ticket"])
    except PeerError as exc:
        return {"outcome": outcome_of(exc), "detail": str(exc)[:1000]}
    return {"outcome": "ok"}


async def _test_fetch(peers: PeerClient, task: dict[str, Any]) -> Report:
    report = await _audit(peers, task)
    if report["outcome"] != "offline":
        with contextlib.suppress(PeerError):  # a test fragment is nobody's data
            await peers.delete_fragment(task["url"], task["fragment_id"],
                                        task["delete_ticket"])
    return report


# -- repair --------------------------------------------------------------------------

class Repairer:
    """One repair task: fetch k, rebuild the missing fragments, store them, list them.
    A task marked `copy` (every missing fragment is one moving off a live holder) fetches
    those fragments themselves and stores them: no decoding, one transfer each."""

    def __init__(self, coord: CoordinatorClient, peers: PeerClient,
                 task: dict[str, Any]) -> None:
        self.coord, self.peers, self.task = coord, peers, task
        self.pack_id = str(task["pack_id"])
        self.k, self.n = int(task["k"]), int(task["n"])
        self.acks: list[str] = []  # tickets of the fetches that arrived whole

    async def run(self) -> Report:
        if self.task.get("copy"):
            rebuilt = await self._copy()
            await acknowledge(self.coord, self.acks)
            if rebuilt is None:
                return {"outcome": "failed", "detail": "a fragment to move could not be fetched"}
        else:
            fragments = await self._fetch_k()
            await acknowledge(self.coord, self.acks)
            if len(fragments) < self.k:
                return {"outcome": "failed", "detail": f"only {len(fragments)} of {self.k} "
                                                       "needed fragments could be fetched"}
            rebuilt = await asyncio.to_thread(self._rebuild, fragments)
        stored = await self._store(rebuilt)
        short = self.pack_id[:12]
        log.info("repaired pack %s: %d of %d missing fragment(s) stored on new suppliers",
                 short, len(stored), len(rebuilt))
        return {"outcome": "ok" if stored else "failed", "stored": stored,
                "detail": "" if stored else "no new supplier took a fragment"}

    def _rebuild(self, fragments: list[bytes]) -> dict[int, bytes]:
        data = decode_pack(self.pack_id, fragments)
        every = encode_pack(self.pack_id, data, self.k, self.n)
        known = {int(i): str(f) for i, f in self.task.get("fragment_ids", {}).items()}
        out = {}
        for index in map(int, self.task["missing"]):
            fid = fragment_id(every[index])
            if known.get(index, fid) != fid:
                raise CorruptFragment(f"rebuilt fragment {index} of pack {self.pack_id[:12]} "
                                      "does not match its recorded id")
            out[index] = every[index]
        return out

    async def _copy(self) -> dict[int, bytes] | None:
        """The fragments to move, fetched from their holders (each checked against its
        id and header), or None if any could not be."""
        sources = list(self.task["sources"])
        got = await asyncio.gather(*(self._fetch_one(s) for s in sources))
        if any(data is None for data in got):
            return None
        return {int(s["index"]): data for s, data in zip(sources, got, strict=True)
                if data is not None}

    async def _fetch_one(self, source: dict[str, Any]) -> bytes | None:
        try:
            data = await self.peers.get_fragment(source["url"], source["fragment_id"],
                                                 source["ticket"],
                                                 max_size=int(source["size"]))
            head = parse_header(data)
        except (PeerError, CorruptFragment) as exc:
            log.info("repair source skipped: %s", exc)
            return None
        ok = head.pack_id == self.pack_id and head.index == int(source["index"])
        if ok:
            self.acks.append(str(source["ticket"]))
        return data if ok else None

    async def _fetch_k(self) -> list[bytes]:
        """k valid fragments, k downloads at a time, the next source for each failure."""
        sources: Iterator[dict[str, Any]] = iter(self.task["sources"])
        running: set[asyncio.Task[bytes | None]] = set()

        def start() -> None:
            source = next(sources, None)
            if source is not None:
                running.add(asyncio.create_task(self._fetch_one(source)))

        for _ in range(self.k):
            start()
        got: list[bytes] = []
        try:
            while running and len(got) < self.k:
                done, running = await asyncio.wait(running,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    data = finished.result()
                    if data is None:
                        start()
                    else:
                        got.append(data)
        finally:
            for rest in running:
                rest.cancel()
        return got[:self.k]

    async def _store(self, rebuilt: dict[int, bytes]) -> list[dict[str, Any]]:
        """Store each rebuilt fragment on a supplier the coordinator names."""
        path = f"/v1/tasks/{int(self.task['task_id'])}/tickets"
        todo, exclude, stored = dict(rebuilt), set(), []
        ids = {i: fragment_id(d) for i, d in rebuilt.items()}  # hashed once, not per round
        for _ in range(STORE_ROUNDS):
            if not todo:
                break
            body = {"fragments": [{"index": i, "fragment_id": ids[i], "size": len(d)}
                                  for i, d in todo.items()], "exclude": sorted(exclude)}
            try:
                targets = (await self.coord.call("POST", path, body))["targets"]
            except CoordinatorError as exc:
                log.info("repair of pack %s: %s", self.pack_id[:12], exc)
                break
            results = await asyncio.gather(*(self._put(t, todo[int(t["index"])])
                                             for t in targets))
            for target, ok in zip(targets, results, strict=True):
                if ok:
                    todo.pop(int(target["index"]))
                    stored.append({k: target[k] for k in
                                   ("index", "fragment_id", "size", "peer_id")})
                else:
                    exclude.add(str(target["peer_id"]))
        return stored

    async def _put(self, target: dict[str, Any], data: bytes) -> bool:
        try:
            await self.peers.put_fragment(target["url"], target["fragment_id"], data,
                                          target["ticket"])
        except PeerError as exc:
            log.info("repair: %s", exc)
            return False
        return True
