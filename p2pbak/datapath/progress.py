"""Progress of a backup or a restore, as the progress callbacks receive it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    files_done: int = 0
    bytes_done: int = 0
    files_total: int | None = None  # a backup knows them once its background scan is done
    bytes_total: int | None = None
    current: str = ""
    packs_saved: int = 0  # a backup's packs committed and indexed: a re-run reuses them
    bytes_saved: int = 0
