"""The peer's answer to a storage challenge: `POST /v1/fragments/{id}/proof`.

The coordinator (directly, or through an audit worker that relays the answer) names a nonce
and leaf indices; the holder answers with those 4 KiB blocks and their Merkle paths
(p2pbak.net.proofs), which the coordinator checks against the root committed with the pack.
The request carries a `prove` ticket like any other transfer.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from aiohttp import web
from pydantic import Field, StringConstraints

from p2pbak.net import proofs
from p2pbak.net.validate import Body, fail, parse

Nonce = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")]


class ChallengeBody(Body):
    nonce: Nonce
    indices: Annotated[list[Annotated[int, Field(ge=0, lt=2**40)]],
                       Field(min_length=1, max_length=proofs.MAX_CHALLENGE)]


async def prove_fragment(request: web.Request) -> web.Response:
    from p2pbak.net.peer import _admit, _spend

    state, fid, t = _admit(request, "prove")
    body = await parse(request, ChallengeBody)
    _spend(state, t)
    # read verifies the whole fragment against its id: a rotted copy has nothing to prove
    data = await asyncio.to_thread(state.store.read, fid)
    if data is None:
        fail(404, f"this peer does not hold fragment {fid}")
    try:
        answer = await asyncio.to_thread(proofs.prove, data, body.indices)
    except proofs.BadProof as exc:
        fail(400, f"bad challenge: {exc}")
    state.served(request, t)
    return web.json_response({"nonce": body.nonce, "proofs": [p.to_dict() for p in answer]})
