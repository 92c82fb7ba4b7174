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
from typing import TYPE_CHECKING

from p2pbak.errors import AckRefused
from p2pbak.net import tickets
from p2pbak.store.db import claims

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

CLAIM_SLACK = 3600  # seconds after its ticket's expiry a receipt may still find its evidence


async def backing(coord: Coordinator, t: tickets.Ticket) -> tuple[str, str] | None:
    """(evidence kind 'placement' or 'ack', the ledger ref to book under) when the work the
    ticket allowed is proven, else None. A store books once per placement (a fragment moved
    back onto a peer later is a new placement), a fetch once per ticket."""
    if t.op == "store":
        at = await claims.placed(coord.db, t.fragment, t.to)
        if at is not None:
            return "placement", f"placed:{t.to}:{t.fragment}:{at}"
        if await claims.served_to_someone(coord.db, t.fragment, t.to):
            return "ack", f"placed:{t.to}:{t.fragment}:served"
        return None
    return ("ack", f"ticket:{t.id}") if await claims.acked(coord.db, t.id, t.from_) else None


def claim_alive(t: tickets.Ticket) -> bool:
    return t.exp + CLAIM_SLACK >= time.time()


async def keep(coord: Coordinator, t: tickets.Ticket, wire: str) -> None:
    await claims.keep_claim(coord.db, t.id, t.to, t.fragment, wire, t.exp + CLAIM_SLACK)


async def acknowledge(coord: Coordinator, machine_id: str, wire: str) -> tickets.Ticket:
    """The receiver `machine_id` got the bytes a fetch ticket it was given named."""
    try:
        claimed = tickets.unverified(wire)
        t = tickets.verify(coord.signing_key.public_key(), wire, op="fetch",
                           fragment=str(claimed.get("fragment")), to=str(claimed.get("to")),
                           now=0)
    except tickets.TicketError as exc:
        raise AckRefused(str(exc)) from None
    if t.from_ != machine_id:
        raise AckRefused("this ticket was given to another machine: only its receiver "
                         "acknowledges it")
    if not claim_alive(t):
        raise AckRefused("ticket expired more than an hour ago: too old to acknowledge")
    await claims.add_ack(coord.db, t.id, machine_id, t.to, t.fragment, t.size)
    return t
