"""The repair checker (paper §2.3 operation 4): which packs need repair, most endangered first.

A fragment counts while its holder is active or offline and was seen within the departure
timeout; a peer unseen for longer, disqualified by audits, or gone for good does not. A
pack with fewer counted fragments than its repair threshold is queued for repair, and so
is any pack with a fragment on a leaving peer (graceful exit). The queue is ordered by how
many counted fragments a pack has above k: the fewest first, as Storj's checker does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pbak.store.db import tasks as store
from p2pbak.store.db.database import now

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

log = logging.getLogger("p2pbak.coordinator.checker")

MAX_ATTEMPTS = 5  # leases that may lapse before a task is given up (the checker re-queues)


def needs_repair(pack: store.PackHealth) -> bool:
    return pack.healthy < min(pack.repair, pack.n) or pack.moving > 0


def priority(pack: store.PackHealth) -> int:
    """Counted fragments above k: lower is more endangered (negative: lost for now)."""
    return pack.healthy - pack.k


def plan_repairs(packs: Sequence[store.PackHealth]) -> list[tuple[int, int]]:
    """(pack pk, priority) of every pack needing repair, most endangered first."""
    due = [p for p in packs if needs_repair(p)]
    due.sort(key=lambda p: (priority(p), p.pk))
    return [(p.pk, priority(p)) for p in due]


async def checker_job(coord: Coordinator) -> int:
    """One checker pass: re-queue lapsed leases, queue repairs. Returns repairs queued."""
    t = now()
    await store.requeue_expired(coord.db, MAX_ATTEMPTS, t)
    await store.release_silent(coord.db, t - coord.online_window)
    await store.close_stale_checks(coord.db, t - coord.repair.departure_timeout, t)
    packs = await store.pack_health(coord.db, t - coord.repair.departure_timeout)
    wanted = plan_repairs(packs)
    lost = sum(1 for _, prio in wanted if prio < 0)
    if lost:
        log.warning("%d pack(s) have fewer than k fragments on counted peers: they can be "
                    "repaired only if departed holders return", lost)
    added = await store.queue_repairs(coord.db, wanted, t)
    if added:
        log.info("queued %d repair(s); %d pack(s) below their repair threshold",
                 added, len(wanted))
    return added
