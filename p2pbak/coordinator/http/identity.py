"""Coordinator routes for users, machines and the wrapped master key."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field, StringConstraints

from p2pbak.coordinator import accounts, identity
from p2pbak.coordinator.http.common import caller, coordinator, ok
from p2pbak.errors import Conflict
from p2pbak.net.validate import B64, Body, Email, Name, b64, fail, parse

routes = web.RouteTableDef()

UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@+-]{1,64}$")]
Salt = Annotated[B64, Field(min_length=8, max_length=1024)]
LoginKey = Annotated[B64, Field(min_length=16, max_length=1024)]
KeyFile = Annotated[B64, Field(min_length=1, max_length=64 * 1024)]


class NewUser(Body):
    user: UserName
    salt: Salt
    login_key: LoginKey
    keyfile: KeyFile
    machine: Name
    email: Email | None = None  # where low-balance alerts go


class EmailBody(Body):
    email: Email | None  # null: none (alerts then go to the user name if it is an address)


class NewMachine(Body):
    login_key: LoginKey
    machine: Name


class KeyFileBody(Body):
    keyfile: KeyFile
    salt: Salt | None = None  # with login_key: the passphrase changed
    login_key: LoginKey | None = None


@routes.get("/v1/users/{user}/salt")
async def salt(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    found = await identity.salt(coordinator(request), user)
    if found is None:
        fail(404, f"unknown user '{user}': check the name or run `p2pbak init`")
    return web.json_response({"salt": b64(found)})


@routes.post("/v1/users")
async def create_user(request: web.Request) -> web.Response:
    body = await parse(request, NewUser)
    try:
        made = await identity.create_user(coordinator(request), user=body.user, salt=body.salt,
                                          login_key=body.login_key, keyfile=body.keyfile,
                                          machine_name=body.machine, email=body.email)
    except Conflict:
        fail(409, f"user '{body.user}' exists: pick another name, or run `p2pbak recover` "
                  "to add this machine to it")
    return web.json_response({"user": body.user, "machine_id": made.machine_id,
                              "secret": made.secret}, status=201)


@routes.post("/v1/users/{user}/machines")
async def add_machine(request: web.Request) -> web.Response:
    """Recover: a new machine for an existing user, proven by the login key."""
    user = request.match_info["user"]
    body = await parse(request, NewMachine)
    try:
        made = await identity.add_machine(coordinator(request), user=user,
                                          login_key=body.login_key, machine_name=body.machine)
    except identity.UnknownUser:
        fail(404, f"unknown user '{user}': check the name")
    except identity.WrongLogin:
        fail(403, f"wrong passphrase for user '{user}': try again")
    return web.json_response({"machine_id": made.machine_id, "secret": made.secret,
                              "keyfile": b64(made.keyfile)}, status=201)


@routes.get("/v1/keyfile")
async def get_keyfile(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    return web.json_response({"keyfile": b64(await identity.keyfile(coord, machine.user))})


@routes.put("/v1/keyfile")
async def put_keyfile(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, KeyFileBody)
    if (body.salt is None) != (body.login_key is None):
        fail(400, "send salt and login_key together (a passphrase change), or neither")
    await identity.set_keyfile(coord, machine.user, body.keyfile, body.salt, body.login_key)
    return ok()


def _email_answer(user: str, email: str | None) -> web.Response:
    return web.json_response({"email": email, "alerts_to": accounts.alerts_to(user, email)})


@routes.get("/v1/email")
async def get_email(request: web.Request) -> web.Response:
    """Where the caller's low-balance alerts go."""
    coord, machine = await caller(request)
    return _email_answer(machine.user, await identity.email(coord, machine.user))


@routes.put("/v1/email")
async def put_email(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, EmailBody)
    await accounts.set_alert_address(coord, machine.user, body.email)
    return _email_answer(machine.user, body.email)
