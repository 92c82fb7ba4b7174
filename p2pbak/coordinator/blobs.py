"""A user's encrypted snapshot records and index blobs, immutable once put."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pbak.store.db import blobs
from p2pbak.store.db.blobs import BlobInfo

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator

__all__ = ["BlobInfo", "delete", "get", "listing", "put"]


async def put(coord: Coordinator, user: str, kind: str, blob_id: str, blob: bytes) -> bool:
    """True if new, False if the identical blob was there; Conflict with other bytes."""
    return await blobs.put(coord.db, user, kind, blob_id, blob)


async def listing(coord: Coordinator, user: str, kind: str) -> list[BlobInfo]:
    return await blobs.listing(coord.db, user, kind)


async def get(coord: Coordinator, user: str, kind: str, blob_id: str) -> bytes | None:
    return await blobs.get(coord.db, user, kind, blob_id)


async def delete(coord: Coordinator, user: str, kind: str, blob_id: str) -> bool:
    return await blobs.delete(coord.db, user, kind, blob_id)
