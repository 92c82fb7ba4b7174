"""Request validation and error answers shared by both servers (coordinator and peer agent).

Handlers read bodies with `parse(request, Model, cap)` and refuse with `fail(status, msg)`.
`error_middleware` turns every refusal into `{"error": "<one line>"}` with a 4xx status and
any unexpected exception into a logged 500, so a bad request can never look like a server
fault. Body models derive from `Body`: unknown fields, wrong types and missing fields are 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from p2pbak.errors import ApiError

log = logging.getLogger("p2pbak.net")

KIB = 1024
MIB = 1024 * KIB
SMALL_BODY = 1 * MIB  # every route but blob uploads
BLOB_MAX = 64 * MIB  # decoded snapshot / index blob
BLOB_BODY = BLOB_MAX * 4 // 3 + 4 * KIB  # the same blob as base64 inside JSON

HEX_ID_PATTERN = r"^[0-9a-f]{64}$"


def fail(status: int, message: str) -> NoReturn:
    raise ApiError(status, message)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _decode_b64(value: Any) -> Any:
    """Standard base64 text → bytes; anything else is left for the strict check to refuse."""
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not valid standard base64") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Field types for body models.
B64 = Annotated[bytes, BeforeValidator(_decode_b64)]
HexId = Annotated[str, StringConstraints(pattern=HEX_ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
Count = Annotated[int, Field(ge=0, le=2**62)]  # bytes, bytes/s: fits SQLite's INTEGER


class Body(BaseModel):
    """Base of every request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `cap` bytes."""
    declared = request.content_length
    if declared is not None and declared > cap:
        fail(413, f"request body of {declared} bytes is over this route's limit of {cap}")
    data = bytearray()
    try:
        async for chunk in request.content.iter_chunked(64 * KIB):
            data += chunk
            if len(data) > cap:
                fail(413, f"request body is over this route's limit of {cap} bytes")
    except ConnectionResetError:  # the client went away mid-body (killed, stopping)
        fail(400, "the connection was lost before the whole body arrived")
    return bytes(data)


def _describe(err: PydanticValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"missing field '{where}'"
    return f"field '{where}': {first['msg']}"


def validate(model: type[M], data: bytes) -> M:
    """Parse JSON bytes into `model` or raise a 400 ApiError saying what is wrong."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(400, f"body is not valid JSON ({exc}): send a JSON object")
    except RecursionError:
        fail(400, "body is nested too deeply: send a flat JSON object")
    if not isinstance(obj, dict):
        fail(400, "body must be a JSON object")
    try:
        return model.model_validate(obj)
    except PydanticValidationError as exc:
        fail(400, f"bad request: {_describe(exc)}")


async def parse(request: web.Request, model: type[M], cap: int = SMALL_BODY) -> M:
    """Read and validate a JSON body (413 over `cap`, 400 when malformed)."""
    return validate(model, await read_body(request, cap))


def path_id(request: web.Request, name: str) -> str:
    """A hex id from the URL path, 400 when it is not 64 lowercase hex digits."""
    value = request.match_info[name]
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        fail(400, f"{name} must be 64 lowercase hex digits")
    return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _http_message(request, exc))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal server error: see the server log")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such route or object: {request.method} {request.path}"
    if exc.status == 405:
        return f"method {request.method} not allowed on {request.path}"
    if exc.status == 413:
        return "request body too large for this route"
    return exc.reason
