"""Peer agents' tasks as the task routes see them: the leased task and its pack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pbak.coordinator import repair
from p2pbak.store.db import tasks as store
from p2pbak.store.db.tasks import LEASED, REPAIR, PackInfo, Task

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

__all__ = ["LEASED", "REPAIR", "PackInfo", "Task", "check_rebuilt", "get_task", "pack_info"]


async def get_task(coord: Coordinator, task_id: int) -> Task | None:
    return await store.get_task(coord.db, task_id)


async def pack_info(coord: Coordinator, pack_pk: int) -> PackInfo | None:
    """The repaired pack's code and owner (None once the pack was deleted)."""
    return await store.pack_info(coord.db, pack_pk)


async def check_rebuilt(coord: Coordinator, pack_pk: int, info: PackInfo,
                        frags: Sequence[tuple[int, str, int]]) -> str | None:
    """Why the rebuilt fragments (index, id, size) do not fit the pack, or None."""
    return repair.check_fragments(info, await store.holders(coord.db, pack_pk), frags)
