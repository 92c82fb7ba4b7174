"""Coordinator routes for users, machines and the wrapped master key."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field, StringConstraints

from p2pbak.coordinator.http.common import caller, coordinator, ok
from p2pbak.net import auth
from p2pbak.net.validate import B64, Body, Name, b64, fail, parse
from p2pbak.store.db import users
from p2pbak.store.db.database import Conflict

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
    found = await users.login(coordinator(request).db, user)
    if found is None:
        fail(404, f"unknown user '{user}': check the name or run `p2pbak init`")
    return web.json_response({"salt": b64(found.salt)})


@routes.post("/v1/users")
async def create_user(request: web.Request) -> web.Response:
    body = await parse(request, NewUser)
    db = coordinator(request).db
    login = auth.new_login(body.salt, body.login_key)
    machine_id, secret = auth.new_machine_id(), auth.new_secret()
    try:
        await users.create_user(db, user=body.user, salt=login.salt, login_hash=login.login_hash,
                                login_hash_key=login.login_hash_key, keyfile=body.keyfile,
                                machine_id=machine_id, machine_name=body.machine,
                                secret_hash=auth.hash_secret(secret))
    except Conflict:
        fail(409, f"user '{body.user}' exists: pick another name, or run `p2pbak recover` "
                  "to add this machine to it")
    return web.json_response({"user": body.user, "machine_id": machine_id, "secret": secret},
                             status=201)


@routes.post("/v1/users/{user}/machines")
async def add_machine(request: web.Request) -> web.Response:
    """Recover: a new machine for an existing user, proven by the login key."""
    user = request.match_info["user"]
    body = await parse(request, NewMachine)
    db = coordinator(request).db
    stored = await users.login(db, user)
    if stored is None:
        fail(404, f"unknown user '{user}': check the name")
    if not auth.login_matches(stored, body.login_key):
        fail(403, f"wrong passphrase for user '{user}': try again")
    machine_id, secret = auth.new_machine_id(), auth.new_secret()
    await users.add_machine(db, user=user, machine_id=machine_id, machine_name=body.machine,
                            secret_hash=auth.hash_secret(secret))
    keyfile = await users.keyfile(db, user)
    return web.json_response({"machine_id": machine_id, "secret": secret,
                              "keyfile": b64(keyfile or b"")}, status=201)


@routes.get("/v1/keyfile")
async def get_keyfile(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    blob = await users.keyfile(coord.db, machine.user)
    return web.json_response({"keyfile": b64(blob or b"")})


@routes.put("/v1/keyfile")
async def put_keyfile(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, KeyFileBody)
    if (body.salt is None) != (body.login_key is None):
        fail(400, "send salt and login_key together (a passphrase change), or neither")
    login = None if body.salt is None or body.login_key is None else auth.new_login(
        body.salt, body.login_key)
    await users.set_keyfile(coord.db, machine.user, body.keyfile, login)
    return ok()
