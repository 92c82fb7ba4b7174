"""Transfer tickets: the coordinator signs (Ed25519), a supplier peer verifies.

A ticket names one operation on one fragment between two peers:
    {"v": 1, "op": "store"|"fetch"|"delete"|"exists"|"prove", "fragment": <hex id>, "size": <bytes>,
     "from": <requesting machine id>, "to": <supplier peer id>, "exp": <unix seconds>,
     "id": <unique hex>, "via": <relay peer id, only when the `to` peer is relayed>}
Wire form: base64url(canonical JSON) "." base64url(signature), sent in the
`X-P2PBAK-Ticket` header. The supplier checks signature, `to` == itself, op, fragment,
expiry, and that `id` was never used before (replay).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pbak.errors import TicketError
from p2pbak.net import jsonsafe

HEADER = "X-P2PBAK-Ticket"
OPS = frozenset({"store", "fetch", "delete", "exists", "relay", "prove"})  # relay: net/relay.py
PAID_OPS = frozenset({"store", "fetch"})  # the ops that move bytes, paid by receipt
DEFAULT_TTL = 600


@dataclass(frozen=True)
class Ticket:
    op: str
    fragment: str
    size: int
    from_: str
    to: str
    exp: int
    id: str
    v: int = 1
    via: str = ""  # the relay that carries the transfer to `to` (paid with its receipt)

    def payload(self) -> bytes:
        d = asdict(self)
        d["from"] = d.pop("from_")
        if not d["via"]:  # a direct transfer's ticket reads as before relays were paid
            del d["via"]
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified(wire: str) -> dict[str, object]:
    """A ticket's fields as written, signature unchecked: which op and fragment to verify."""
    try:
        d = jsonsafe.loads(_unb64(wire.split(".", 1)[0]), max_depth=2)
    except (ValueError, TypeError, RecursionError):
        raise TicketError("malformed ticket") from None
    if not isinstance(d, dict):
        raise TicketError("malformed ticket")
    return d


def issue(key: Ed25519PrivateKey, *, op: str, fragment: str, size: int, from_: str, to: str,
          ttl: int = DEFAULT_TTL, now: float | None = None, via: str = "") -> str:
    """Sign a fresh ticket and return its wire form."""
    if op not in OPS:
        raise ValueError(f"unknown ticket op {op!r}")
    exp = int((time.time() if now is None else now) + ttl)
    t = Ticket(op=op, fragment=fragment, size=size, from_=from_, to=to, exp=exp,
               id=secrets.token_hex(16), via=via)
    body = t.payload()
    return f"{_b64(body)}.{_b64(key.sign(body))}"


def verify(public: Ed25519PublicKey, wire: str | None, *, op: str, fragment: str, to: str,
           now: float | None = None) -> Ticket:
    """Check a ticket's signature and fields; replay is the caller's check (by `id`)."""
    if not wire:
        raise TicketError("missing ticket")
    try:
        body_b64, sig_b64 = wire.split(".", 1)
        body, sig = _unb64(body_b64), _unb64(sig_b64)
        public.verify(sig, body)
        d = jsonsafe.loads(body, max_depth=2)
        t = Ticket(op=d["op"], fragment=d["fragment"], size=int(d["size"]), from_=d["from"],
                   to=d["to"], exp=int(d["exp"]), id=str(d["id"]), v=int(d["v"]),
                   via=str(d.get("via", "")))
    except InvalidSignature:
        raise TicketError("forged ticket: bad signature") from None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise TicketError("malformed ticket") from None
    if t.op != op:
        raise TicketError(f"ticket is for {t.op}, not {op}")
    if t.fragment != fragment:
        raise TicketError("ticket is for another fragment")
    if t.to != to:
        raise TicketError("ticket is for another peer")
    if t.exp < (time.time() if now is None else now):
        raise TicketError("expired ticket")
    return t


# a receipt's mark: the holder served the transfer over a link of its own (hole-punched,
# net/punch.py), not through the relay the ticket names, which so carried nothing to pay
DIRECT = "!direct"


def split_receipt(receipt: str) -> tuple[str, bool]:
    """(the ticket's wire form, whether the holder marked it direct)."""
    if receipt.endswith(DIRECT):
        return receipt[:-len(DIRECT)], True
    return receipt, False


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def load_public_key(hex_key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
