"""Which suppliers get the fragments of a new pack (paper §2.4), and with which code (§2.2).

Pure: peers in, an ordered choice out. Eligibility (announced, online, active, not the
caller) is the query's job; here: enough free space for one fragment, a preference order,
distinct subnets first, and the k/n code for the chosen peers' availability estimates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from p2pbak.datapath.erasure import HEADER_LEN, share_length
from p2pbak.errors import NotEnoughPeers, SuppliersFull
from p2pbak.market import allocation
from p2pbak.market.allocation import Candidate, order_by_balance
from p2pbak.market.erasure import Code, choose_code, min_n_for_k
from p2pbak.net.urls import relay_base
from p2pbak.store.db.peers import Peer

PRIOR_AVAILABILITY = 0.5  # the paper's 12 h/day, for peers with little history
# Work allocation needs a choice: a code may cost this much more than the cheapest one
# over every candidate so that the suppliers after its n stay free to take moved work.
CHOICE_SLACK = 0.15
CLAMP = 1e-6  # estimates never reach 0 or 1


@dataclass(frozen=True)
class Placement:
    code: Code
    peers: tuple[Peer, ...]  # code.n of them, distinct
    fragment_size: int
    spares: tuple[Peer, ...] = ()  # next in line, for fragments whose upload fails


def relayed(peer: Peer) -> bool:
    """Reached only through a relay: its URL is a relay's (net/relay.py)."""
    return bool(relay_base(peer.url))


def spare_count(n: int) -> int:
    return max(2, n // 4)


@lru_cache(maxsize=1 << 16)
def subnet_of(url: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) of the URL's host; a host name stands for itself
    (cached: every heartbeat repeats its peer's URL)."""
    return allocation.subnet_of((urlsplit(url).hostname or "").lower(), v6_prefix=64)


def weighted_order(peers: Sequence[Peer], rng: random.Random) -> list[Peer]:
    """A random order in which peers with more free space tend to come first.

    Weighted sampling without replacement (Efraimidis–Spirakis, keys ln(u)/w). Stable:
    the same seed and peers give the same order, whatever order they were passed in.
    """
    def key(peer: Peer) -> float:
        u = rng.random() or 1e-300
        return math.log(u) / (peer.free_bytes + 1)

    keyed = [(key(p), p) for p in sorted(peers, key=lambda p: p.id)]
    keyed.sort(key=lambda kp: kp[0], reverse=True)
    return [p for _, p in keyed]


def spread_subnets(peers: Sequence[Peer]) -> list[Peer]:
    """Keep the order but take one peer per subnet per round, so the first n span as many
    subnets as there are (on loopback all share one and the order is unchanged)."""
    rounds: dict[str, int] = {}
    ranked = []
    for pos, peer in enumerate(peers):
        r = rounds.get(peer.subnet, 0)
        rounds[peer.subnet] = r + 1
        ranked.append((r, pos, peer))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [p for _, _, p in ranked]


def order_candidates(peers: Sequence[Peer], rng: random.Random,
                     balances: Mapping[str, int] | None = None) -> list[Peer]:
    """Preference order of eligible suppliers: the lowest balances first (§2.4), distinct
    subnets first (p2pbak.market.allocation); without balances, a free-space-weighted
    shuffle."""
    if balances is None:
        return spread_subnets(weighted_order(peers, rng))

    by_id = {p.id: p for p in peers}
    order = order_by_balance([Candidate(p.id, balances.get(p.id, 0), p.subnet, relayed(p))
                              for p in sorted(peers, key=lambda p: p.id)],
                             seed=rng.getrandbits(64))
    return [by_id[i] for i in order]


def availability(peer: Peer) -> float:
    return clamped(peer.availability)


def clamped(availability: float) -> float:
    """An availability estimate kept off 0 and 1 (CLAMP), as every rule counts it."""
    return min(max(availability, CLAMP), 1.0 - CLAMP)


def fragment_size(pack_length: int, k: int) -> int:
    return share_length(pack_length, k) + HEADER_LEN


def place(peers: Sequence[Peer], size: int, rng: random.Random, *,
          target: float | None = None, balances: Mapping[str, int] | None = None) -> Placement:
    """Choose the code and its n suppliers for a pack of `size` bytes.

    A code chosen for fewer peers may have a smaller k and so bigger fragments, which may
    exclude more peers: the candidate set shrinks each round until every one has room.
    """
    need = min_n_for_k(1)
    candidates = order_candidates(peers, rng, balances)
    online, frag = len(candidates), 0
    while True:
        if len(candidates) < need:
            if online >= need:  # enough online: they lack room, not presence
                raise SuppliersFull(
                    f"suppliers are full: {online} online, but only {len(candidates)} have room "
                    f"for a {frag}-byte fragment (need {need}); other users must raise their "
                    "space caps (`p2pbak supply set --space`) or more peers join",
                    have=len(candidates), need=need)
            raise NotEnoughPeers(f"not enough online peers (have {len(candidates)}, need {need}): "
                                 "start more peers or wait", have=len(candidates), need=need)
        avail = [availability(p) for p in candidates]
        code = _code(avail, target)
        if balances is not None:
            code = leave_choice(avail, code, target)
        frag = fragment_size(size, code.k)
        fitting = [p for p in candidates if p.free_bytes >= frag]
        if len(fitting) == len(candidates):
            return Placement(code, tuple(candidates[:code.n]), frag,
                             tuple(candidates[code.n:code.n + spare_count(code.n)]))
        candidates = fitting


def leave_choice(avail: Sequence[float], best: Code, target: float | None = None) -> Code:
    """The code over the shortest prefix of the candidates (in allocation order) that
    meets the target within CHOICE_SLACK of `best`'s factor; `best` when it misses the
    target (a small grid needs every peer) or no shorter prefix does."""
    if not best.meets_target:
        return best

    def code_for(m: int) -> Code:
        return _code(avail[:m], target)

    def good(c: Code) -> bool:
        return c.meets_target and c.factor <= best.factor * (1 + CHOICE_SLACK)

    lo, hi = min_n_for_k(1), len(avail)
    while lo < hi:  # the factor falls as candidates are added: bisect on the prefix
        mid = (lo + hi) // 2
        if good(code_for(mid)):
            hi = mid
        else:
            lo = mid + 1
    found = code_for(lo)
    return found if good(found) and found.n < best.n else best


def _code(avail: Sequence[float], target: float | None) -> Code:
    """choose_code at `target`, or at its default target."""
    return choose_code(avail) if target is None else choose_code(avail, target)
