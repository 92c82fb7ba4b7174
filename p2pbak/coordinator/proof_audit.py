"""Audits the coordinator verifies itself (Sia's storage proofs, Storj's satellite audits).

An audit task carries a challenge (a nonce and leaf indices derived from it, so nothing is
stored) and a `prove` ticket; the worker relays it to the holder and hands the answer in
with its report. The coordinator checks that answer against the Merkle root committed with
the pack. Whenever the worker's report is not such a verified proof (it says `failed`, or
its proof does not check out), the coordinator asks the holder itself and decides on its
own evidence: a fresh challenge, then, if the proof fails or no root is known, the whole
fragment checked against its id (any holder of an id can verify a fragment, as in
Tahoe-LAFS), which also tells a wrong root sent by a consumer from a bad holder. A worker
whose report contradicts that evidence is marked down as if it had failed an audit.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import blake3
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from p2pbak.net import proofs, tickets
from p2pbak.store.db import claims
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import tasks as store

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.audit")

CHALLENGE_LEAVES = 8
DIRECT_TIMEOUT = 10.0  # seconds the holder has to answer the coordinator's own challenge
OK, FAILED, OFFLINE = store.OK_OUTCOME, store.FAILED_OUTCOME, store.OFFLINE_OUTCOME


def _nonce(coord: Coordinator, task_id: int) -> bytes:
    raw = coord.signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    key = blake3.blake3(b"p2pbak audit nonce key" + raw).digest()
    return blake3.blake3(f"audit:{task_id}".encode(), key=key).digest()[:16]


def challenge(coord: Coordinator, task: store.Task) -> dict[str, Any]:
    """The audit's challenge: nonce (hex) and the leaf indices it selects."""
    nonce = _nonce(coord, task.id)
    return {"nonce": nonce.hex(),
            "indices": proofs.challenge_indices(nonce, task.size or 0, CHALLENGE_LEAVES)}


@dataclass(frozen=True)
class Verdict:
    target: str  # the holder's outcome, on the coordinator's evidence
    worker_honest: bool  # the worker's report agrees with that evidence
    verified: str  # how it was decided: 'proof' (the worker's), 'own', 'offline'


def _checks(root: str | None, size: int, indices: list[int], answer: Any) -> bool:
    if root is None or not isinstance(answer, list):
        return False
    try:
        proofs.verify_answer(root, size, indices, answer)
    except proofs.BadProof:
        return False
    return True


async def judge_audit(coord: Coordinator, task: store.Task, worker: str, outcome: str,
                      answer: Any) -> Verdict:
    """The holder's outcome on the coordinator's own evidence, and the worker's honesty."""
    assert task.target is not None and task.fragment_id is not None and task.size is not None
    root = await claims.fragment_root(coord.db, task.target, task.fragment_id)
    ch = challenge(coord, task)
    if outcome == OK and _checks(root, task.size, ch["indices"], answer):
        return Verdict(OK, True, "proof")
    own = await direct_check(coord, task.target, task.fragment_id, task.size, root)
    if own == OFFLINE:  # the coordinator cannot reach it either: nobody is blamed
        return Verdict(OFFLINE, True, "offline")
    # a worker that could not reach the holder is not blamed (a partition between peers);
    # one that called a holder failed, or ok without relaying a valid proof, is
    return Verdict(own, outcome == OFFLINE or (outcome == own and own == FAILED), "own")


async def direct_check(coord: Coordinator, peer_id: str, fid: str, size: int,
                       root: str | None) -> str:
    """The coordinator challenges the holder itself: OK, FAILED or OFFLINE."""
    found = await coordinator_peers.many(coord.db, [peer_id])
    peer = found.get(peer_id)
    if peer is None:
        return OFFLINE
    nonce = secrets.token_bytes(16)
    indices = proofs.challenge_indices(nonce, size, CHALLENGE_LEAVES)
    url = f"{peer.url.rstrip('/')}/v1/fragments/{fid}"
    timeout = aiohttp.ClientTimeout(total=DIRECT_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if root is not None:
                status, body = await _prove(http, coord, url, peer_id, fid, size, nonce, indices)
                if status == 404:
                    return FAILED
                if status == 200 and body.get("nonce") == nonce.hex() and \
                        _checks(root, size, indices, body.get("proofs")):
                    return OK
            return await _whole(coord, http, url, peer_id, fid, size, root)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("audit of %s on %s: no answer (%s)", fid[:12], peer_id, exc)
        return OFFLINE


async def _prove(http: aiohttp.ClientSession, coord: Coordinator, url: str, peer_id: str,
                 fid: str, size: int, nonce: bytes, indices: list[int]
                 ) -> tuple[int, dict[str, Any]]:
    wire = coord.ticket(op="prove", fragment=fid, size=size, from_="coordinator", to=peer_id)
    async with http.post(f"{url}/proof", json={"nonce": nonce.hex(), "indices": indices},
                         headers={tickets.HEADER: wire}) as resp:
        if resp.status != 200:
            return resp.status, {}
        try:
            body = await resp.json()
        except (ValueError, aiohttp.ContentTypeError):
            return 400, {}
        return 200, body if isinstance(body, dict) else {}


async def _whole(coord: Coordinator, http: aiohttp.ClientSession, url: str, peer_id: str,
                 fid: str, size: int, root: str | None) -> str:
    """Fetch the whole fragment and check it against its id (and the root, if any)."""
    via = (await coord.relays_of([peer_id])).get(peer_id, "")
    wire = coord.ticket(op="fetch", fragment=fid, size=size, from_="coordinator", to=peer_id,
                        via=via)
    async with http.get(url, headers={tickets.HEADER: wire}) as resp:
        if resp.status != 200:
            return FAILED
        data = await resp.content.read(size + 1)
    if len(data) != size or blake3.blake3(data).hexdigest() != fid:
        return FAILED
    if root is not None and proofs.root(data) != root:  # the consumer sent a wrong root
        log.warning("fragment %s: the committed Merkle root is wrong; audits fall back to "
                    "whole-fragment checks", fid[:12])
        await claims.clear_root(coord.db, fid)
    return OK
