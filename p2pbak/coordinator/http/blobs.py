"""Coordinator routes for a user's encrypted snapshot records and index blobs."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator.http.common import caller, ok
from p2pbak.net.validate import B64, BLOB_BODY, BLOB_MAX, Body, b64, fail, parse, path_id
from p2pbak.store.db import blobs
from p2pbak.store.db.database import Conflict

routes = web.RouteTableDef()

# URL collection → (kind in the store, singular for messages)
COLLECTIONS = {"snapshots": "snapshot", "indexes": "index"}


class BlobBody(Body):
    blob: Annotated[B64, Field(min_length=1, max_length=BLOB_MAX)]


def _kind(request: web.Request) -> str:
    return COLLECTIONS[request.match_info["kind"]]


_KINDS = "{kind:snapshots|indexes}"


@routes.put(f"/v1/{_KINDS}/{{blob_id}}")
async def put_blob(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    kind, blob_id = _kind(request), path_id(request, "blob_id")
    body = await parse(request, BlobBody, cap=BLOB_BODY)
    try:
        new = await blobs.put(coord.db, machine.user, kind, blob_id, body.blob)
    except Conflict:
        fail(409, f"{kind} {blob_id} exists with other content: {kind}s are immutable")
    return ok(201 if new else 200)


@routes.get(f"/v1/{_KINDS}")
async def list_blobs(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    items = await blobs.listing(coord.db, machine.user, _kind(request))
    return web.json_response({request.match_info["kind"]: [
        {"id": i.id, "created": i.created, "size": i.size} for i in items]})


@routes.get(f"/v1/{_KINDS}/{{blob_id}}")
async def get_blob(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    kind, blob_id = _kind(request), path_id(request, "blob_id")
    blob = await blobs.get(coord.db, machine.user, kind, blob_id)
    if blob is None:
        fail(404, f"no {kind} {blob_id} for this user")
    return web.json_response({"id": blob_id, "blob": b64(blob)})


@routes.delete(f"/v1/{_KINDS}/{{blob_id}}")
async def delete_blob(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    kind, blob_id = _kind(request), path_id(request, "blob_id")
    if not await blobs.delete(coord.db, machine.user, kind, blob_id):
        fail(404, f"no {kind} {blob_id} for this user")
    return ok()
