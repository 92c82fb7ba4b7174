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
    """Slider caps as users type them: bytes, bytes/s, bytes/s; None means no cap (a
    space of 0 lends nothing)."""

    space: int | None
    upload: int | None
    download: int | None


@dataclass(frozen=True)
class Counted:
    """The supply the market counts for one peer: bytes, bytes/s, bytes/s while online."""

    space: int
    upload: int
    download: int


def headroom(proven: float, floor: float) -> float:
    """How much more than proven a peer is counted for: the floor, then as much again."""
    return max(floor, proven)


def counted(cap: float, proven: float, floor: float) -> float:
    """One resource's counted supply: the cap, no more than proven plus its headroom."""
    return min(cap, proven + headroom(proven, floor))


def _low(a: int | None, b: int | None) -> int | None:
    """The lower of two caps, None (no cap) being the highest."""
    if a is None:
        return b
    return a if b is None or a <= b else b


def lowest(*caps: Caps) -> Caps:
    """Per resource the lowest cap (None, no cap, is the highest). A fold of pairs: the
    coordinator calls it once per peer, a million times a job."""
    space: int | None = None
    upload: int | None = None
    download: int | None = None
    for c in caps:
        space, upload, download = (_low(space, c.space), _low(upload, c.upload),
                                   _low(download, c.download))
    return Caps(space, upload, download)


def counted_caps(caps: Caps, proven: Proven, window: float, availability: float,
                 disk: int) -> Counted:
    """The caps the market counts (space bytes, bytes/s while online): each declared cap
    (an unset space cap is the disk, an unset rate UNCAPPED_RATE) bounded by the proven
    work; bandwidth proven is the bytes moved over `window` seconds online."""
    online = max(window * max(availability, 1e-6), 1.0)
    space = disk if caps.space is None else caps.space
    upload = UNCAPPED_RATE if caps.upload is None else caps.upload
    download = UNCAPPED_RATE if caps.download is None else caps.download
    return Counted(int(counted(space, proven.space, SPACE_FLOOR)),
                   int(counted(upload, proven.upload / online, RATE_FLOOR)),
                   int(counted(download, proven.download / online, RATE_FLOOR)))


def share_bound(honest: tuple[float, float, float], liar: tuple[float, float, float]
                ) -> tuple[float, float]:
    """How far one supplier's counted vector L can move g(p) (Definition 3: the S_X/S_S
    terms) from the others' H: |ΔS_X/S_S| ≤ max(L_X/H_S, (H_X/H_S)·(L_S/H_S))."""
    hs, hu, hd = honest
    ls, lu, ld = liar
    return (max(lu / hs, hu / hs * ls / hs), max(ld / hs, hd / hs * ls / hs))
