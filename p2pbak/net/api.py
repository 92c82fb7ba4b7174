"""HTTP clients: the coordinator's JSON API and peer agents' fragment API (docs/api.md).

Every failure becomes a one-line P2pbakError: an unreachable server, the server's own
`error` text on a 4xx, refused credentials, or a server fault.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
from collections.abc import Sequence
from dataclasses import asdict
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import aiohttp
import blake3

from p2pbak import __version__
from p2pbak.config import split_urls
from p2pbak.errors import CoordinatorError, P2pbakError, PeerError, Unreachable
from p2pbak.net import punch, seal, urls
from p2pbak.net.tickets import HEADER as TICKET_HEADER
from p2pbak.net.urls import relay_base

if TYPE_CHECKING:
    from p2pbak.config import Config, Supply

MAX_FRAGMENT = 64 * 1024 * 1024
USER_AGENT = f"p2pbak/{__version__}"
# ClientResponseError only comes from raise_for_status/json(), which are not used unguarded.
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any, what: str = "blob") -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise P2pbakError(f"the coordinator sent a malformed {what}") from None


def _why(exc: BaseException, timeout: aiohttp.ClientTimeout) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout.sock_read or timeout.total or 0:g} s"
    return str(exc) or type(exc).__name__


def _body_error(raw: bytes, status: int) -> str:
    """The `{"error": ...}` text of an answer body, else its status."""
    try:
        body = jsonlib.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return f"HTTP {status}"


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The server's `{"error": ...}` text, else its status line."""
    try:
        body = await resp.json(content_type=None)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except (ValueError, aiohttp.ClientError):
        pass
    return f"HTTP {resp.status} {resp.reason or ''}".strip()


class _Session:
    """Owns one aiohttp session; usable as `async with`."""

    def __init__(self, timeout: aiohttp.ClientTimeout, limit: int = 100) -> None:
        self._timeout = timeout
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(limit=self._limit))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


class CoordinatorClient(_Session):
    """The coordinator's API through the first of its URLs that answers.

    Several coordinators on one database answer alike (docs/scale.md), so a request that
    cannot reach one (refused, reset, timed out) goes to the next URL, and the client stays
    with the one that answered. Any HTTP answer (a 4xx, a 5xx) is the coordinators' word:
    it is never tried elsewhere. A name with several addresses is tried address by address by the
    connector itself (happy eyeballs, RFC 8305)."""

    def __init__(self, base_url: str | Sequence[str], *, machine_id: str = "",
                 secret: str = "", timeout: float = 30) -> None:
        # a stall of `timeout` seconds fails; a big blob on a slow link may take longer
        super().__init__(aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                               sock_read=timeout))
        self.urls = split_urls(base_url)
        if not self.urls:
            raise P2pbakError("no coordinator URL given: one starting with http:// or "
                              "https://, e.g. http://backup.example.org:8420")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise P2pbakError(f"coordinator URL {url!r} must start with http:// or "
                                  "https://, e.g. http://backup.example.org:8420")
        self._at = 0  # the URL that answered last
        self.machine_id = machine_id
        self._secret = secret

    @property
    def base_url(self) -> str:
        """The URL in use: the one that answered last."""
        return self.urls[self._at]

    @classmethod
    def from_config(cls, cfg: Config) -> CoordinatorClient:
        return cls(cfg.coordinator_urls, machine_id=cfg.machine_id, secret=cfg.secret)

    async def call(self, method: str, path: str, json: dict[str, Any] | None = None, *,
                   auth: bool = True) -> dict[str, Any]:
        """One request, failed over along the URLs; the JSON answer ({} for an empty body)."""
        headers = self._auth() if auth else {}
        failures: list[str] = []
        for step in range(len(self.urls)):
            at = (self._at + step) % len(self.urls)
            raw, down = await self._send(method, self.urls[at] + path, json, headers)
            if down:
                failures.append(f"{self.urls[at]}: {down}")
                continue
            self._at = at
            return self._parse(raw, method, path)
        if len(self.urls) == 1:
            raise Unreachable(f"cannot reach the coordinator at {failures[0]}; "
                              "is `p2pbak serve` running?")
        raise Unreachable(f"cannot reach any of the {len(self.urls)} coordinators "
                          f"({'; '.join(failures)}); is `p2pbak serve` running?")

    async def _send(self, method: str, url: str, json: dict[str, Any] | None,
                    headers: dict[str, str]) -> tuple[bytes, str]:
        """(the answer's body, "") or (b"", why this URL did not answer); raises the
        refusal of a 4xx."""
        try:
            async with self.session.request(method, url, json=json, headers=headers) as resp:
                if resp.status >= 400:
                    raise await self._refusal(resp)
                return await resp.read(), ""
        except _NETWORK_ERRORS as exc:
            return b"", _why(exc, self._timeout)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.machine_id}.{self._secret}"}

    def _parse(self, raw: bytes, method: str, path: str) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            body = jsonlib.loads(raw)
        except ValueError:
            raise P2pbakError(f"the coordinator at {self.base_url} sent a non-JSON answer "
                              f"to {method} {path}") from None
        if not isinstance(body, dict):
            raise P2pbakError(f"the coordinator sent an unexpected answer to {method} {path}")
        return body

    async def _refusal(self, resp: aiohttp.ClientResponse) -> CoordinatorError:
        text = await _error_text(resp)
        if resp.status == 401:
            text = (f"the coordinator refused this machine's credentials ({text}): "
                    "run `p2pbak recover` to register this machine again")
        elif resp.status >= 500:
            text = f"coordinator failed: {text}"
        return CoordinatorError(text, resp.status)

    # -- identity --------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self.call("GET", "/v1/health", auth=False)

    async def salt(self, user: str) -> bytes:
        body = await self.call("GET", f"/v1/users/{quote(user, safe='')}/salt", auth=False)
        return unb64(body.get("salt"), "salt")

    async def create_user(self, user: str, *, salt: bytes, login_key: bytes, keyfile: bytes,
                          machine: str, email: str | None = None) -> dict[str, Any]:
        """Register a user and this machine → {"user", "machine_id", "secret"}."""
        extra = {"email": email} if email else {}  # absent: older coordinators take it
        return await self.call("POST", "/v1/users", {
            "user": user, "salt": b64(salt), "login_key": b64(login_key),
            "keyfile": b64(keyfile), "machine": machine, **extra}, auth=False)

    async def email(self) -> dict[str, Any]:
        """{"email": the address given or None, "alerts_to": where alerts go or None}."""
        return await self.call("GET", "/v1/email")

    async def set_email(self, address: str | None) -> dict[str, Any]:
        return await self.call("PUT", "/v1/email", {"email": address})

    async def add_machine(self, user: str, *, login_key: bytes,
                          machine: str) -> dict[str, Any]:
        """Recover on a new machine → {"machine_id", "secret", "keyfile": bytes}."""
        body = await self.call("POST", f"/v1/users/{quote(user, safe='')}/machines",
                               {"login_key": b64(login_key), "machine": machine}, auth=False)
        body["keyfile"] = unb64(body.get("keyfile"), "key file")
        return body

    async def get_keyfile(self) -> bytes:
        return unb64((await self.call("GET", "/v1/keyfile")).get("keyfile"), "key file")

    async def put_keyfile(self, blob: bytes) -> None:
        await self.call("PUT", "/v1/keyfile", {"keyfile": b64(blob)})

    # -- peer agent ------------------------------------------------------------------

    async def announce_peer(self, url: str, caps: Supply) -> dict[str, Any]:
        """{"peer_id", "rejoined"}: rejoined when this peer had left and comes back."""
        return await self.call("POST", "/v1/peer", {"url": url, **asdict(caps)})

    async def heartbeat(self, url: str, stored: int, free: int) -> dict[str, Any]:
        return await self.call("POST", "/v1/heartbeat",
                               {"url": url, "stored_bytes": stored, "free_bytes": free})

    async def sign_off(self) -> None:
        """This machine's agent is stopping: count its peer offline now."""
        await self.call("POST", "/v1/peer/offline", {})

    # -- packs -----------------------------------------------------------------------

    async def plan(self, size: int, pack_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"size": size}
        if pack_id is not None:
            body["pack_id"] = pack_id
        return await self.call("POST", "/v1/packs/plan", body)

    async def tickets(self, pack_id: str, fragments: list[dict[str, Any]]) -> list[str]:
        """Store tickets for fragments [{"index", "fragment_id", "size", "peer_id"}]."""
        body = await self.call("POST", f"/v1/packs/{quote(pack_id, safe='')}/tickets",
                               {"fragments": fragments})
        tickets = body.get("tickets")
        if not isinstance(tickets, list) or len(tickets) != len(fragments):
            raise P2pbakError("the coordinator sent the wrong number of tickets")
        return [str(t) for t in tickets]

    async def commit(self, pack_id: str, *, k: int, n: int, repair: int, success: int,
                     length: int, fragments: list[dict[str, Any]]) -> None:
        await self.call("POST", f"/v1/packs/{quote(pack_id, safe='')}/commit", {
            "k": k, "n": n, "repair": repair, "success": success, "length": length,
            "fragments": fragments})

    async def get_pack(self, pack_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/packs/{quote(pack_id, safe='')}")

    async def packs_exist(self, pack_ids: list[str]) -> set[str]:
        body = await self.call("POST", "/v1/packs/exists", {"pack_ids": list(pack_ids)})
        return {str(p) for p in body.get("present", [])}

    # -- snapshots and indexes -------------------------------------------------------

    async def _put_blob(self, kind: str, blob_id: str, blob: bytes) -> None:
        await self.call("PUT", f"/v1/{kind}/{quote(blob_id, safe='')}", {"blob": b64(blob)})

    async def _get_blob(self, kind: str, blob_id: str) -> bytes:
        body = await self.call("GET", f"/v1/{kind}/{quote(blob_id, safe='')}")
        return unb64(body.get("blob"), f"{kind} blob")

    async def _delete_blob(self, kind: str, blob_id: str) -> None:
        await self.call("DELETE", f"/v1/{kind}/{quote(blob_id, safe='')}")

    async def _list(self, kind: str) -> list[dict[str, Any]]:
        items = (await self.call("GET", f"/v1/{kind}")).get(kind, [])
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    async def put_snapshot(self, snapshot_id: str, blob: bytes) -> None:
        await self._put_blob("snapshots", snapshot_id, blob)

    async def get_snapshot(self, snapshot_id: str) -> bytes:
        return await self._get_blob("snapshots", snapshot_id)

    async def list_snapshots(self) -> list[dict[str, Any]]:
        """[{"id", "created", "size"}] for this user."""
        return await self._list("snapshots")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._delete_blob("snapshots", snapshot_id)

    async def put_index(self, index_id: str, blob: bytes) -> None:
        await self._put_blob("indexes", index_id, blob)

    async def get_index(self, index_id: str) -> bytes:
        return await self._get_blob("indexes", index_id)

    async def list_indexes(self) -> list[dict[str, Any]]:
        return await self._list("indexes")

    async def delete_index(self, index_id: str) -> None:
        await self._delete_blob("indexes", index_id)

    async def status(self) -> dict[str, Any]:
        return await self.call("GET", "/v1/status")

    async def observed(self, port: int) -> tuple[str, int]:
        """The public (ip, port) our router gives local `port` (net/punch.py): asked from
        that port, of the coordinator we answer to."""
        headers = {**self._auth(), "User-Agent": USER_AGENT}
        try:
            async with (aiohttp.ClientSession(connector=punch.bound_connector(port),
                                              timeout=self._timeout) as session,
                        session.get(self.base_url + "/v1/observed", headers=headers) as resp):
                if resp.status >= 400:
                    raise await self._refusal(resp)
                body = await resp.json(content_type=None)
        except _NETWORK_ERRORS as exc:
            raise Unreachable(f"cannot reach the coordinator at {self.base_url}: "
                              f"{_why(exc, self._timeout)}") from None
        if not isinstance(body, dict):
            raise P2pbakError("the coordinator sent an unexpected answer to GET /v1/observed")
        return str(body.get("ip", "")), int(body.get("port", 0))

    async def punched(self, links: int) -> None:
        """Tell the coordinator this relayed peer has hole-punched `links` direct links."""
        await self.call("POST", "/v1/punched", {"links": links})

    # -- the market --------------------------------------------------------------------

    async def receipts(self, wires: list[str]) -> dict[str, Any]:
        """Hand in tickets this peer honoured → {"paid", "accepted", "replayed", "refused"}."""
        return await self.call("POST", "/v1/receipts", {"receipts": wires})

    async def acks(self, wires: list[str]) -> dict[str, Any]:
        """Acknowledge fetches received whole → {"acknowledged", "paid", "refused"}."""
        if not wires:
            return {"acknowledged": 0, "paid": 0, "refused": []}
        return await self.call("POST", "/v1/acks", {"acks": wires})

    async def account(self) -> dict[str, Any]:
        return await self.call("GET", "/v1/account")

    async def prices(self, limit: int = 100) -> dict[str, Any]:
        return await self.call("GET", f"/v1/prices?limit={limit}", auth=False)

    async def set_supply(self, caps: Supply) -> dict[str, Any]:
        return await self.call("PUT", "/v1/supply", asdict(caps))

    async def supply_quote(self, caps: Supply) -> dict[str, Any]:
        return await self.call("POST", "/v1/supply/quote", asdict(caps))


class PeerClient(_Session):
    """Fragment transfers to and from peer agents, one pooled session for all of them."""

    def __init__(self, *, timeout: float = 60, limit: int = 64,
                 links: punch.Links | None = None) -> None:
        # No total timeout: a capped peer may take long, but it must keep bytes flowing.
        super().__init__(aiohttp.ClientTimeout(total=None, sock_connect=10,
                                               sock_read=timeout), limit)
        self.links = links  # hole-punched links to relayed peers (None: relays only)

    async def close(self) -> None:
        if self.links is not None:
            await self.links.close()
        await super().close()

    async def _exchange(self, method: str, url: str, path: str, headers: dict[str, str],
                        data: bytes | None, max_size: int) -> tuple[int, bytes]:
        """One request to a peer: its (status, body). A relayed peer's is sealed end to end
        for the link key its URL pins (net/seal.py); one with no pinned key is refused, so
        nothing crosses a relay in the clear."""
        if seal.url_key(url):
            got = await self._punched(method, url, path, headers, data, max_size)
            if got is not None:
                return got
            return await self._sealed(method, url, path, headers, data, max_size)
        if relay_base(url):
            raise PeerError(f"peer {url} is reached through a relay but its URL pins no link "
                            "key: refusing to send in the clear", 400)
        target, check = _peer_target(url, path)
        return await self._direct(self.session, method, url, target, check, headers, data,
                                  max_size)

    async def _direct(self, session: aiohttp.ClientSession, method: str, url: str,
                      target: str, check: aiohttp.Fingerprint | bool,
                      headers: dict[str, str], data: bytes | None,
                      max_size: int) -> tuple[int, bytes]:
        """One request straight to the peer (TLS pinned by `check`): its (status, body)."""
        try:
            async with session.request(method, target, data=data, headers=headers,
                                       ssl=check) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    body += chunk
                    if len(body) > max_size:
                        raise PeerError(f"peer {url} sent more than {max_size} bytes",
                                        resp.status)
                return resp.status, bytes(body)
        except aiohttp.ServerFingerprintMismatch:
            raise _impostor(url) from None
        except _NETWORK_ERRORS as exc:
            raise PeerError(f"cannot reach peer {url}: {_why(exc, self._timeout)}") from None

    async def _punched(self, method: str, url: str, path: str, headers: dict[str, str],
                       data: bytes | None, max_size: int) -> tuple[int, bytes] | None:
        """The request over a hole-punched link to the relayed peer at `url` (net/punch.py),
        punched now with the request's ticket if none is up; None: send it via the relay
        (no link, or it broke before an answer)."""
        ticket = headers.get(TICKET_HEADER)
        if self.links is None or not ticket:
            return None
        link = await self.links.get(url, ticket, self._sealed)
        if link is None:
            return None
        try:
            return await self._direct(link.session, method, url, link.base + path,
                                      link.check, headers, data, max_size)
        except PeerError as exc:
            if exc.status:  # an answer (too large, an impostor): the peer's word
                raise
            await self.links.drop(url)
            return None

    async def _request(self, method: str, url: str, fragment_id: str, ticket: str,
                       data: bytes | None = None, max_size: int = MAX_FRAGMENT,
                       ) -> tuple[int, bytes]:
        path = f"/v1/fragments/{quote(fragment_id, safe='')}"
        status, body = await self._exchange(method, url, path, {TICKET_HEADER: ticket},
                                            data, max_size)
        if status >= 400 and status != 404:
            raise PeerError(f"peer {url} refused {method} of fragment "
                            f"{fragment_id[:12]}: {_body_error(body, status)}", status)
        return status, body

    async def put_fragment(self, url: str, fragment_id: str, data: bytes, ticket: str) -> None:
        if len(data) > MAX_FRAGMENT:
            raise PeerError(f"fragment {fragment_id[:12]} is over {MAX_FRAGMENT} bytes", 413)
        status, _ = await self._request("PUT", url, fragment_id, ticket, data)
        if status not in (200, 201):
            raise PeerError(f"peer {url} did not store fragment {fragment_id[:12]} "
                            f"(HTTP {status})", status)

    async def get_fragment(self, url: str, fragment_id: str, ticket: str, *,
                           max_size: int = MAX_FRAGMENT) -> bytes:
        """The fragment's bytes, verified against its id (BLAKE3)."""
        status, body = await self._request("GET", url, fragment_id, ticket,
                                           max_size=max_size)
        if status == 404:
            raise PeerError(f"peer {url} does not hold fragment {fragment_id[:12]}", 404)
        if blake3.blake3(body).hexdigest() != fragment_id:
            raise PeerError(f"peer {url} sent corrupt bytes for fragment {fragment_id[:12]}",
                            status)
        return body

    async def prove_fragment(self, url: str, fragment_id: str, ticket: str,
                             challenge: dict[str, Any]) -> dict[str, Any]:
        """The holder's answer to a storage challenge (net.proofs), not checked here."""
        path = f"/v1/fragments/{quote(fragment_id, safe='')}/proof"
        status, raw = await self._exchange(
            "POST", url, path, {TICKET_HEADER: ticket, "Content-Type": "application/json"},
            jsonlib.dumps(challenge).encode(), 1 << 20)
        if status >= 400:
            raise PeerError(f"peer {url} refused to prove fragment {fragment_id[:12]}: "
                            f"{_body_error(raw, status)}", status)
        return _json_object(raw, f"peer {url} answered a challenge with something not JSON")

    async def has_fragment(self, url: str, fragment_id: str, ticket: str) -> bool:
        status, _ = await self._request("HEAD", url, fragment_id, ticket)
        return status == 200

    async def delete_fragment(self, url: str, fragment_id: str, ticket: str) -> None:
        """Delete; a fragment already gone counts as deleted."""
        await self._request("DELETE", url, fragment_id, ticket)

    async def _sealed(self, method: str, url: str, path: str, headers: dict[str, str],
                      data: bytes | None, max_size: int) -> tuple[int, bytes]:
        """One request sealed for the link key pinned in `url`; its (status, body)."""
        try:
            blob, answer_key = seal.seal_request(seal.url_key(url), {
                "method": method, "path": path, "headers": headers}, data or b"")
        except seal.SealError as exc:
            raise PeerError(f"peer {url}: {exc}", 400) from None
        raw = bytearray()
        target, check = _peer_target(url, seal.SEALED_PATH)
        try:
            async with self.session.post(target, data=blob, ssl=check) as resp:
                if resp.status != 200:
                    raise PeerError(f"peer {url} refused a sealed {method}: "
                                    f"{await _error_text(resp)}", resp.status)
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    raw += chunk
                    if len(raw) > max_size + seal.OVERHEAD:
                        raise PeerError(f"peer {url} sent more than {max_size} bytes", 200)
        except aiohttp.ServerFingerprintMismatch:
            raise _impostor(url) from None
        except _NETWORK_ERRORS as exc:
            raise PeerError(f"cannot reach peer {url}: {_why(exc, self._timeout)}") from None
        try:
            head, body = seal.open_response(answer_key, bytes(raw))
        except seal.SealError as exc:
            raise PeerError(f"peer {url} refused: {exc} (not the peer the coordinator "
                            "recorded)", 403) from None
        status = head.get("status")
        return (status if isinstance(status, int) else 502), body

    async def health(self, url: str) -> dict[str, Any]:
        status, raw = await self._exchange("GET", url, "/v1/health", {}, None, 1 << 20)
        if status != 200:
            raise PeerError(f"peer {url}: {_body_error(raw, status)}", status)
        return _json_object(raw, f"peer {url} sent a non-JSON health answer")


def _peer_target(url: str, path: str) -> tuple[str, aiohttp.Fingerprint | bool]:
    """The URL to request and the TLS check: a pinned peer's certificate (net/peertls)."""
    try:
        base, check = urls.target(url)
    except ValueError as exc:
        raise PeerError(str(exc), 400) from None
    return base.rstrip("/") + path, check


def _impostor(url: str) -> PeerError:
    return PeerError(f"peer {url} presented a TLS certificate other than the one the "
                     "coordinator recorded: refused", 403)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        body = jsonlib.loads(raw)
    except ValueError:
        raise PeerError(what, 502) from None
    return body if isinstance(body, dict) else {}
