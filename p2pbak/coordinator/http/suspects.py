"""`POST /v1/suspects`: a consumer's `check --read-data` names holders that answered wrong.

The coordinator does not take the consumer's word either: each named placement (of the
caller's own packs) gets an audit, which the coordinator decides on its own evidence
(coordinator.proof_audit); a holder that fails is disqualified and repaired as usual.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import audit
from p2pbak.coordinator.http.common import caller
from p2pbak.net.validate import Body, HexId, parse

routes = web.RouteTableDef()


class Suspect(Body):
    fragment_id: HexId
    peer_id: Annotated[str, Field(min_length=1, max_length=64)]


class SuspectsBody(Body):
    fragments: Annotated[list[Suspect], Field(min_length=1, max_length=1000)]


@routes.post("/v1/suspects")
async def suspects(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, SuspectsBody)
    queued, known = await audit.audit_suspects(
        coord, machine.user, [(s.fragment_id, s.peer_id) for s in body.fragments])
    return web.json_response({"audits_queued": queued, "known": known})
