"""Supply counts what is proven (issue 14), not what is declared.

The paper's maximum supply S_i (§2.5, eq. 1: S = Σ_i S_i, the S of g(p) in Definition 3)
is what a user's caps allow. Caps are a user's word, so the coordinator counts, per
resource, at most the work the peer has proven plus a headroom that grows with it:

    counted_X = min(lowest cap_X since the last price job, proven_X + max(floor_X, proven_X))

Space proven: bytes of committed placements a passed coordinator audit vouches for;
bandwidth proven: bytes moved over the window that the other side acknowledged (or a
commit recorded), as a rate while online. The floor lets a new peer be given its first
fragments; after that the headroom doubles what is proven each time it is proven, so an
honest peer's counted supply reaches its caps in a few audit rounds, while a peer that
proves nothing never counts more than the floor. Caps moved more than once between two
price jobs count at their lowest: a swing faster than the job (and so the price hold,
market.hold) can see gains nothing; a cap raised 2% a day gains nothing past its proof.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pbak.market.caps import UNCAPPED_RATE
from p2pbak.units import DAY, GB

SPACE_FLOOR = GB  # bytes of headroom before anything is proven: room for first fragments
RATE_FLOOR = GB // DAY  # bytes/s of bandwidth headroom (1 GB a day while online)


@dataclass(frozen=True)
class Proven:
    """Work a peer has proven: space held (bytes), bytes served and received in the window."""

    space: int = 0
    upload: int = 0
    download: int = 0


@dataclass(frozen=True)
class Caps:
    """Slider caps as users type them: bytes, bytes/s, bytes/s; 0 means no cap."""

    space: int
    upload: int
    download: int


# The rules below take numbers or numpy arrays alike (element by element): the price job
# applies them to every peer at once, as columns, not in a Python loop per peer.

def headroom(proven: float, floor: float) -> float:
    """How much more than proven a peer is counted for: the floor, then as much again."""
    return np.maximum(floor, proven)


def counted(cap: float, proven: float, floor: float) -> float:
    """One resource's counted supply: the cap, no more than proven plus its headroom."""
    return np.minimum(cap, proven + headroom(proven, floor))


def low_caps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element by element the lower of two caps, 0 (no cap) being the highest."""
    return np.where(a <= 0, np.maximum(b, 0), np.where((b <= 0) | (a <= b), a, b))


def lowest(*caps: Caps) -> Caps:
    """Per resource the lowest cap (0, no cap, is the highest)."""
    low = np.zeros(3, dtype=np.int64)
    for c in caps:
        low = low_caps(low, np.array([c.space, c.upload, c.download], dtype=np.int64))
    return Caps(*(int(x) for x in low))


def counted_caps(caps: Caps, proven: Proven, window: float, availability: float,
                 disk: int) -> Caps:
    """The caps the market counts (space bytes, bytes/s while online): each declared cap
    (an unset space cap is the disk, an unset rate UNCAPPED_RATE) bounded by the proven
    work; bandwidth proven is the bytes moved over `window` seconds online."""
    row = counted_columns(np.array([[caps.space, caps.upload, caps.download]]),
                          np.array([[proven.space, proven.upload, proven.download]]),
                          window, np.array([availability]), np.array([disk]))[0]
    return Caps(*(int(x) for x in row))


def counted_columns(caps: np.ndarray, proven: np.ndarray, window: float,
                    availability: np.ndarray, disk: np.ndarray) -> np.ndarray:
    """`counted_caps` of N peers at once: caps and proven (N, 3) as (space, upload,
    download), availability and disk (N,); the counted caps (N, 3), integers."""
    online = np.maximum(window * np.maximum(availability, 1e-6), 1.0)
    unset = np.column_stack([disk, np.full(len(disk), UNCAPPED_RATE),
                             np.full(len(disk), UNCAPPED_RATE)])
    cap = np.where(caps > 0, caps, unset).astype(np.float64)
    proof = proven / np.column_stack([np.ones(len(disk)), online, online])
    return counted(cap, proof, np.array([SPACE_FLOOR, RATE_FLOOR, RATE_FLOOR],
                                        dtype=np.float64)).astype(np.int64)


def share_bound(honest: tuple[float, float, float], liar: tuple[float, float, float]
                ) -> tuple[float, float]:
    """How far one supplier's counted vector L can move g(p) (Definition 3: the S_X/S_S
    terms) from the others' H: |ΔS_X/S_S| ≤ max(L_X/H_S, (H_X/H_S)·(L_S/H_S))."""
    hs, hu, hd = honest
    ls, lu, ld = liar
    return (max(lu / hs, hu / hs * ls / hs), max(ld / hs, hd / hs * ls / hs))
