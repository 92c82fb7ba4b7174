"""Request validation and error answers shared by both servers (coordinator and peer agent).

Handlers read bodies with `parse(request, Model, cap)` and refuse with `fail(status, msg)`.
`error_middleware` turns every refusal into `{"error": "<one line>"}` with a 4xx status and
any unexpected exception into a logged 500, so a bad request can never look like a server
fault. Body models derive from `Body`: unknown fields, wrong types and missing fields are 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic import ValidationError as PydanticValidationError

from p2pbak.addresses import address_problem
from p2pbak.errors import ApiError
from p2pbak.net import jsonsafe

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


def _check_email(text: str) -> str:
    problem = address_problem(text)
    if problem is not None:
        raise ValueError(f"not an e-mail address: {problem}")
    return text


Email = Annotated[str, AfterValidator(_check_email)]


class Body(BaseModel):
    """Base of every request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CapsBody(Body):
    """A machine's supply caps: null is no cap; a space of 0 lends nothing, and a rate is
    at least 1 B/s (a peer that holds fragments must serve them)."""

    space: Count | None
    upload: Annotated[int, Field(ge=1, le=2**62)] | None
    download: Annotated[int, Field(ge=1, le=2**62)] | None


M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `cap` bytes, and with 408 when
    it trickles in slower than `body_deadline` allows (a slow-body client holds nothing)."""
    declared = request.content_length
    if declared is not None and declared > cap:
        fail(413, f"request body of {declared} bytes is over this route's limit of {cap}")
    data = bytearray()
    try:
        async with asyncio.timeout(body_deadline(declared or cap)):
            async for chunk in request.content.iter_chunked(64 * KIB):
                data += chunk
                if len(data) > cap:
                    fail(413, f"request body is over this route's limit of {cap} bytes")
    except ConnectionResetError:  # the client went away mid-body (killed, stopping)
        fail(400, "the connection was lost before the whole body arrived")
    except TimeoutError:
        fail(408, "the request body arrived too slowly: send it again at once")
    return bytes(data)


# A connection that has not sent a whole request head within this many seconds is closed
# (aiohttp's keep-alive timer also runs while the first request's headers are awaited); more
# than the 15 s our clients keep an idle connection, so they never reuse a closed one.
# Both may be lowered through the environment (tests do, to see a held connection closed).
HEADER_TIMEOUT = float(os.environ.get("P2PBAK_HEADER_TIMEOUT", "20"))

# seconds any body may take, plus its size at BODY_MIN_RATE
BODY_GRACE = float(os.environ.get("P2PBAK_BODY_GRACE", "30"))
BODY_MIN_RATE = 64 * KIB  # bytes/s: a body slower than this is a held connection


def body_deadline(size: int, rate: float = 0) -> float:
    """Seconds a body of `size` bytes may take to arrive (at our own `rate` cap, if lower)."""
    floor = min(rate, BODY_MIN_RATE) if rate > 0 else BODY_MIN_RATE
    return BODY_GRACE + size / floor


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
        obj = jsonsafe.loads(data)
    except (RecursionError, jsonsafe.TooDeep):
        fail(400, "body is nested too deeply: send a flat JSON object")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(400, f"body is not valid JSON ({exc}): send a JSON object")
    if not isinstance(obj, dict):
        fail(400, "body must be a JSON object")
    try:
        return model.model_validate(obj)
    except PydanticValidationError as exc:
        fail(400, f"bad request: {_describe(exc)}")


async def parse(request: web.Request, model: type[M], cap: int = SMALL_BODY) -> M:
    """Read and validate a JSON body (413 over `cap`, 400 when malformed)."""
    return validate(model, await read_body(request, cap))


def ascii_int(text: str, what: str, lo: int, hi: int) -> int:
    """An integer written in ASCII digits within [lo, hi], else 400 (`str.isdigit` takes
    '²' and other Unicode digits that `int` then refuses or misreads)."""
    if not text or len(text) > 19 or any(c not in "0123456789" for c in text):
        fail(400, f"{what} must be a whole number written in digits 0-9")
    value = int(text)
    if not lo <= value <= hi:
        fail(400, f"{what} must be between {lo} and {hi}")
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else ascii_int(raw, f"query parameter {name!r}", lo, hi)


def path_int(request: web.Request, name: str, hi: int = 2**62) -> int:
    return ascii_int(request.match_info[name], name, 0, hi)


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
