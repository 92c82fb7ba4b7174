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


def order_by_balance(candidates: Sequence[Candidate], seed: int | None = None) -> list[str]:
    """Peer ids, lowest balance first; ties in random order (reproducible with `seed`);
    the first peer of each subnet before any second peer of a subnet already used."""
    rng = random.Random(seed)
    keyed = [(c.balance, rng.random(), c) for c in candidates]
    keyed.sort(key=lambda t: (t[0], t[1]))
    first, rest, seen = [], [], set()
    for _, _, c in keyed:
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
