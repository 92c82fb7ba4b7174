"""The peer agent's delete list: after each heartbeat, fetch the fragments nothing needs
any more (each with a coordinator-signed delete ticket), delete them, confirm.

A ticket is checked like one that came over HTTP (signature, this peer, op, fragment,
expiry, never used before), so only the coordinator can make an agent delete anything.
Confirmations that could not be sent are sent with the next request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from p2pbak.net import tickets

if TYPE_CHECKING:
    from p2pbak.peer.agent import AgentContext

log = logging.getLogger("p2pbak.peer")

ROUNDS = 20  # delete batches per heartbeat at most; the rest wait for the next one


class DeleteList:
    def __init__(self) -> None:
        self.done: list[str] = []  # deleted, confirmation still to send
        self.deleted = 0
        self.freed = 0

    async def heartbeat_hook(self, ctx: AgentContext, answer: dict[str, Any]) -> None:
        before = (self.deleted, self.freed)
        try:
            await self._rounds(ctx)
        finally:
            if self.deleted > before[0]:
                log.info("deleted %d fragment(s) nothing needs any more (%d bytes freed)",
                         self.deleted - before[0], self.freed - before[1])

    async def _rounds(self, ctx: AgentContext) -> None:
        for _ in range(ROUNDS):
            body = await ctx.coord.call("POST", "/v1/garbage", {"done": self.done})
            self.done = []
            deletes = body.get("deletes")
            if not isinstance(deletes, list) or not deletes:
                return
            for item in deletes:
                if await self._delete(ctx, item):
                    self.done.append(str(item["fragment_id"]))

    async def _delete(self, ctx: AgentContext, item: Any) -> bool:
        state = ctx.state
        try:
            fid = str(item["fragment_id"])
            t = tickets.verify(state.ticket_key, str(item["ticket"]), op="delete",
                               fragment=fid, to=state.peer_id)
        except (tickets.TicketError, KeyError, TypeError) as exc:
            log.warning("delete list entry refused: %s", exc)
            return False
        if not state.store.use_ticket(t.id, t.exp):
            return True  # deleted under this ticket before; the confirmation was lost
        size = await asyncio.to_thread(_size, state.store, fid)
        if await asyncio.to_thread(state.store.delete, fid):
            self.deleted += 1
            self.freed += size
        return True


def _size(store: Any, fid: str) -> int:
    try:
        return int(store.path(fid).stat().st_size)
    except (OSError, ValueError):
        return 0
