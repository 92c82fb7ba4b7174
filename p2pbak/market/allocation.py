"""Work allocation (§2.4): work goes to the eligible suppliers with the lowest balance,
which drives every account back toward 0. Distinct subnets come first so that the first n
picks spread a pack over as many networks as possible (DESIGN.md §3)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import NamedTuple


class Candidate(NamedTuple):
    peer_id: str
    balance: int  # µc
    subnet: str
    relayed: bool = False  # reached only through a relay (docs/network.md)


def order_by_balance(candidates: Sequence[Candidate], seed: int | None = None) -> list[str]:
    """Peer ids, lowest balance first; at equal balance directly reachable peers before
    relayed ones (a relay is paid on top for every byte it carries), then a random order
    (reproducible with `seed`); the first peer of each subnet before any second peer of a
    subnet already used."""
    rng = random.Random(seed)
    keyed = [(c.balance, c.relayed, rng.random(), c) for c in candidates]
    keyed.sort(key=lambda t: t[:3])
    first, rest, seen = [], [], set()
    for *_, c in keyed:
        (rest if c.subnet in seen else first).append(c.peer_id)
        seen.add(c.subnet)
    return first + rest


def subnet_of(address: str, v6_prefix: int = 48) -> str:
    """The /24 (IPv4) or /`v6_prefix` (IPv6) network of an address; the host name itself
    otherwise."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = 24 if ip.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


# -- moving stored work (§2.4: "drive all accounts (back) to zero over time") -------------
#
# Storage is most of what accounts earn and spend, and it is paid wherever fragments sit.
# New packs alone cannot steer it once the data is stored, so fragments of accounts that
# earn too much are moved, a few a day, to those that earn too little.

class Placed(NamedTuple):
    """One stored fragment: its pack, index, holder and size."""

    pack: int
    index: int
    peer_id: str
    size: int


class Supplier(NamedTuple):
    """A peer as the mover sees it."""

    peer_id: str
    account: str
    earn: float  # µc per byte-day it is paid for holding (p_S × availability × usable)
    room: int  # bytes it may still take under its caps
    subnet: str


def move_budget(stored: int, share: float, spare_upload: int, spare_download: int) -> int:
    """Bytes work allocation may move in a day: `share` of the stored fragment bytes, and
    no more than the suppliers' caps carry. A copy (holder → worker → new holder) costs
    two uploads and two downloads per byte, so at most half of the day's upload and of
    its download capacity (bytes, Σ over online peers of cap × time online). The budget
    is the caps, not a price threshold: dear bandwidth does not stop the moves (they are
    upkeep, charged back through q_S), so balances keep returning to 0 at any prices."""
    return max(0, min(int(stored * share), spare_upload // 2, spare_download // 2))


def daily_capacity(rate: int, availability: float, seconds: float,
                   uncapped: int) -> int:
    """Bytes a bandwidth cap (bytes/s, 0 = uncapped) carries over `seconds` online
    `availability` of the time."""
    return int((rate or uncapped) * seconds * availability)


def want(balance: int, rate: float, horizon: float) -> float:
    """µc/day an account's income should change by: cancel its net rate (income − spending
    per day) and bring its balance back to 0 over `horizon` days. Negative: earns too much."""
    return -(balance / horizon + rate)


def plan_moves(placed: Sequence[Placed], suppliers: Sequence[Supplier],
               balances: dict[str, int], rates: dict[str, float],
               holders: dict[int, set[str]], budget: int, horizon: float = 7.0,
               seed: int = 0) -> list[tuple[Placed, str]]:
    """Which fragments to move and the peer each is expected to land on (the one work
    allocation picks: lowest balance first). A fragment moves only when its holder's
    account must shed more than half the income it brings and the receiver's account must
    gain at least half; at most `budget` bytes move. `holders`: pack → peers holding (or
    owning) it, none of which may receive another fragment of it."""
    wants = {a: want(b, rates.get(a, 0.0), horizon) for a, b in balances.items()}
    by_peer = {s.peer_id: s for s in suppliers}
    order = [by_peer[p] for p in order_by_balance(
        [Candidate(s.peer_id, balances.get(s.account, 0), s.subnet) for s in suppliers], seed)]
    room = {s.peer_id: s.room for s in suppliers}
    taken = {pk: set(peers) for pk, peers in holders.items()}
    moves: list[tuple[Placed, str]] = []
    smallest, start = min((f.size for f in placed), default=0), 0
    for f in sorted(placed, key=lambda f: (wants.get(_account(by_peer, f.peer_id), 0.0),
                                           -f.size, f.pack, f.index)):
        donor = by_peer.get(f.peer_id)
        if donor is None or f.size > budget or wants.get(donor.account, 0.0) >= \
                -f.size * donor.earn / 2:
            continue
        to = _receiver(order, start, f, wants, room, taken.get(f.pack, set()))
        if to is None:
            continue
        wants[donor.account] += f.size * donor.earn
        wants[to.account] -= f.size * to.earn
        room[to.peer_id] -= f.size
        taken.setdefault(f.pack, set()).add(to.peer_id)
        budget -= f.size
        moves.append((f, to.peer_id))
        # receivers fill in order: the filled ones in front, which no fragment could
        # take again, are passed over for good (else each search walks them all again)
        while start < len(order) and room[order[start].peer_id] < smallest:
            start += 1
    return moves


def _account(by_peer: dict[str, Supplier], peer_id: str) -> str:
    s = by_peer.get(peer_id)
    return s.account if s is not None else ""


def _receiver(order: Sequence[Supplier], start: int, f: Placed, wants: dict[str, float],
              room: dict[str, int], taken: set[str]) -> Supplier | None:
    """The first peer in allocation order (from `start`) that may take `f` and whose
    account needs it."""
    for i in range(start, len(order)):
        s = order[i]
        if s.peer_id in taken or room[s.peer_id] < f.size:
            continue
        return s if wants.get(s.account, 0.0) >= f.size * s.earn / 2 else None
    return None
