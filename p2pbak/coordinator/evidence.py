"""Proof before pay: what backs a supplier's receipt, and receivers' acknowledgements.

A ticket is permission, not proof. A store receipt pays once the fragment is committed on
that peer (a pack commit, a repair or a move recorded its placement), or once a receiver
acknowledged fetching that fragment from that peer (a test store, proven by the test fetch
that followed). A fetch receipt pays once the machine that asked for the ticket (its `from`)
acknowledged, under its own credentials, that it received the fragment and the bytes matched
the id. Until then the receipt waits as a claim; a claim whose ticket expired more than
`CLAIM_SLACK` ago pays nothing. One placement pays its store once, whatever the tickets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pbak.errors import AckRefused
from p2pbak.net import tickets
from p2pbak.store.db import claims

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

CLAIM_SLACK = 3600  # seconds after its ticket's expiry a receipt may still find its evidence


async def facts(coord: Coordinator, peer_id: str,
                batch: Sequence[tickets.Ticket]) -> claims.Facts:
    """What `backing` and the billing of these receipts of `peer_id` read, in a few
    queries for the whole batch."""
    return await claims.facts(coord.db, peer_id, [t.fragment for t in batch],
                              [(t.id, t.from_) for t in batch if t.op != "store"])


def backing(t: tickets.Ticket, known: claims.Facts) -> tuple[str, str] | None:
    """(evidence kind 'placement' or 'ack', the ledger ref to book under) when the work the
    ticket allowed is proven, else None. A store books once per placement (a fragment moved
    back onto a peer later is a new placement), a fetch once per ticket."""
    if t.op == "store":
        at = known.placed.get(t.fragment)
        if at is not None:
            return "placement", f"placed:{t.to}:{t.fragment}:{at}"
        if t.fragment in known.served:
            return "ack", f"placed:{t.to}:{t.fragment}:served"
        return None
    return ("ack", f"ticket:{t.id}") if (t.id, t.from_) in known.acked else None


def claim_alive(t: tickets.Ticket) -> bool:
    return t.exp + CLAIM_SLACK >= time.time()


async def keep(coord: Coordinator, t: tickets.Ticket, wire: str) -> None:
    await claims.keep_claim(coord.db, t.id, t.to, t.fragment, wire, t.exp + CLAIM_SLACK)


async def acknowledge(coord: Coordinator, machine_id: str, wire: str) -> tickets.Ticket:
    """The receiver `machine_id` got the bytes a fetch ticket it was given named."""
    result = (await acknowledge_all(coord, machine_id, [wire]))[0]
    if isinstance(result, AckRefused):
        raise result
    return result


async def acknowledge_all(coord: Coordinator, machine_id: str,
                          wires: Sequence[str]) -> list[tickets.Ticket | AckRefused]:
    """`acknowledge` for a batch, recorded in one transaction: per wire, its ticket or
    why it is refused."""
    out = [_acknowledgeable(coord, machine_id, wire) for wire in wires]
    await claims.add_acks(coord.db, machine_id, [
        (t.id, t.to, t.fragment, t.size) for t in out if isinstance(t, tickets.Ticket)])
    return out


def _acknowledgeable(coord: Coordinator, machine_id: str,
                     wire: str) -> tickets.Ticket | AckRefused:
    try:
        claimed = tickets.unverified(wire)
        t = tickets.verify(coord.signing_key.public_key(), wire, op="fetch",
                           fragment=str(claimed.get("fragment")), to=str(claimed.get("to")),
                           now=0)
    except tickets.TicketError as exc:
        return AckRefused(str(exc))
    if t.from_ != machine_id:
        return AckRefused("this ticket was given to another machine: only its receiver "
                          "acknowledges it")
    if not claim_alive(t):
        return AckRefused("ticket expired more than an hour ago: too old to acknowledge")
    return t
