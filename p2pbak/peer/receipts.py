"""Receipts: the tickets a peer agent honoured, handed to the coordinator to be paid.

A supplier is paid only for a transfer proven by its ticket (paper §2.4, Table 1): after
each store (its download) and fetch (its upload) the agent keeps the ticket's wire form and
sends the batch with its heartbeats (`POST /v1/receipts`). The coordinator pays each
ticket once, so sending one again after a lost answer costs nothing. Unsent receipts are kept
in `receipts.txt` in the storage folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pbak.config import atomic_write
from p2pbak.errors import P2pbakError
from p2pbak.net.api import CoordinatorClient
from p2pbak.net.tickets import PAID_OPS, Ticket

log = logging.getLogger("p2pbak.peer")

MAX_PENDING = 100_000  # receipts kept while the coordinator is away
BATCH = 1000  # the coordinator's cap per request
RECEIPTS_FILE = "receipts.txt"


@dataclass
class ReceiptBook:
    """Receipts not yet handed in; with a `path` they also wait on disk (one per line), so
    an agent restart does not forfeit what it earned."""

    path: Path | None = None
    pending: list[str] = field(default_factory=list)
    paid: int = 0  # µc the coordinator paid for our receipts since start

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            lines = self.path.read_text(encoding="ascii", errors="replace").splitlines()
            self.pending = [ln for ln in lines if ln.strip()][:MAX_PENDING]

    def served(self, ticket: Ticket, wire: str) -> None:
        """A `PeerState.served_hooks` entry: keep tickets of transfers done."""
        if ticket.op in PAID_OPS and wire and len(self.pending) < MAX_PENDING:
            self.pending.append(wire)
            if self.path is not None:
                with self.path.open("a", encoding="ascii") as fh:
                    fh.write(wire + "\n")

    def _save(self) -> None:
        if self.path is not None:
            atomic_write(self.path, "".join(w + "\n" for w in self.pending).encode(),
                         mode=0o600)

    async def flush(self, coord: CoordinatorClient) -> int:
        """Send every pending receipt; keep those not delivered. Returns µc paid now."""
        paid = sent = 0
        while self.pending:
            batch = self.pending[:BATCH]
            try:
                answer = await coord.receipts(batch)
            except P2pbakError as exc:
                log.debug("receipts not delivered, kept for the next heartbeat: %s", exc)
                break
            del self.pending[:len(batch)]
            sent += len(batch)
            paid += _note(answer)
        if sent:  # one rewrite of the file; a receipt sent twice is paid once anyway
            self._save()
        self.paid += paid
        return paid

    async def heartbeat_hook(self, ctx: Any, answer: dict[str, Any]) -> None:
        """A heartbeat hook: each heartbeat also hands in the receipts gathered."""
        await self.flush(ctx.coord)


def _note(answer: dict[str, Any]) -> int:
    for item in answer.get("refused", []) or []:
        log.warning("the coordinator refused a receipt: %s", item.get("error", "?"))
    return int(answer.get("paid", 0) or 0)
