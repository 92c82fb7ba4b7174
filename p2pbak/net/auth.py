"""Machine tokens on the wire: `Authorization: Bearer <machine_id>.<secret>`.

A machine token is `<machine_id>.<secret>` (both hex; the secret is 32 random bytes). How the
coordinator stores and checks it is p2pbak.coordinator.credentials.
"""

from __future__ import annotations

from aiohttp import web

from p2pbak.net.validate import fail


def token(machine_id: str, secret: str) -> str:
    return f"{machine_id}.{secret}"


def _hex(text: str) -> bool:
    return 0 < len(text) <= 128 and all(c in "0123456789abcdef" for c in text)


def bearer(request: web.Request) -> tuple[str, str]:
    """The machine id and secret of the request's token, or 401 when it sends none."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    machine_id, dot, secret = value.strip().partition(".")
    # aiohttp hands non-UTF-8 header bytes on as surrogates: refuse anything not hex here,
    # before the id reaches the database or the secret a hash
    if scheme.lower() != "bearer" or not dot or not _hex(machine_id) or not _hex(secret):
        fail(401, "missing machine token: send 'Authorization: Bearer <machine_id>.<secret>'"
                  " (run `p2pbak init` or `p2pbak recover` to get one)")
    return machine_id, secret
