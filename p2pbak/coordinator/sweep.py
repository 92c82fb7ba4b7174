"""The availability sweep: peers silent for longer than the online window go offline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from p2pbak.store.db import garbage
from p2pbak.store.db import peers as coordinator_peers

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.sweep")


async def availability_sweep(coord: Coordinator) -> None:
    gone = await coordinator_peers.sweep(coord.db, coord.online_window)
    if gone:
        log.info("%d peer(s) marked offline after %ss without a heartbeat",
                 gone, coord.online_window)
    # store tickets never committed: what they stored goes on the suppliers' delete lists
    await garbage.expire_grants(coord.db)
