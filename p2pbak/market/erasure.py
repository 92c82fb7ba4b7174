"""Erasure-code parameters from supplier availabilities (paper §2.2). Pure math.

A pack is cut into k data shares and coded into n fragments, one per supplier; any k
restore it. With supplier i online with probability a_i (independently), the pack is
available when at least k of its n holders are online: a Poisson-binomial tail (§2.2:
"approx. 17 replications" for plain copies at a = 0.5 and "a replication factor of
approx. 3" with erasure coding, for a 99.999% target).

Four thresholds, as in Storj: `k` restore, `repair` (repair starts when fewer holders
than this remain), `success` (an upload is done once this many fragments are stored) and
`total` = n (fragments placed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from p2pbak.errors import NotEnoughPeers, P2pbakError

MAX_N = 256  # zfec's limit on shares
DEFAULT_TARGET = 0.99999
# Whatever the estimates, a pack survives losing a third of its holders: k <= 2n/3.
SURVIVABLE_LOSS = 1 / 3
# Repair starts once the live holders no longer meet a target ten times weaker.
REPAIR_SLACK = 10.0


@dataclass(frozen=True)
class Code:
    k: int
    n: int
    repair: int
    success: int
    total: int  # == n
    availability: float  # P(at least k of the n holders online)
    meets_target: bool

    @property
    def factor(self) -> float:
        """Replication factor n/k (§2.2)."""
        return self.n / self.k


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:  # NaN fails the comparison too
        raise P2pbakError(f"{name} must be strictly between 0 and 1, got {value}")


def replication_copies(availability: float, target: float = DEFAULT_TARGET) -> int:
    """Copies plain replication needs: smallest c with 1 - (1 - a)^c >= target (§2.2)."""
    _check_probability("availability", availability)
    _check_probability("target", target)
    copies = math.ceil(math.log(1.0 - target) / math.log(1.0 - availability))
    # Guard the float boundary: step until the inequality really holds.
    while copies > 1 and 1.0 - (1.0 - availability) ** (copies - 1) >= target:
        copies -= 1
    while 1.0 - (1.0 - availability) ** copies < target:
        copies += 1
    return copies


def _count_distributions(availabilities: Sequence[float]) -> list[list[float]]:
    """dist[m][j] = P(exactly j of the first m holders online) (Poisson-binomial)."""
    dist = [[1.0]]
    for a in availabilities:
        prev = dist[-1]
        cur = [0.0] * (len(prev) + 1)
        for j, p in enumerate(prev):
            cur[j] += p * (1.0 - a)
            cur[j + 1] += p * a
        dist.append(cur)
    return dist


def _prob_from(dist: list[float], k: int) -> float:
    """P(count >= k), summed from the small side for precision near 1."""
    if k <= 0:
        return 1.0
    if k > len(dist) - 1:
        return 0.0
    return max(0.0, 1.0 - math.fsum(dist[:k]))


def prob_at_least(k: int, availabilities: Sequence[float]) -> float:
    """P(at least k of the holders are online), holders independent (Poisson-binomial)."""
    return _prob_from(_count_distributions(availabilities)[-1], k)


def min_n_for_k(k: int) -> int:
    """Smallest n with k <= (1 - SURVIVABLE_LOSS) * n: losing a third still leaves k."""
    return math.ceil(k / (1.0 - SURVIVABLE_LOSS) - 1e-9)


def _thresholds(k: int, n: int, dist: list[list[float]], target: float) -> tuple[int, int]:
    """(repair, success) for a k-of-n code whose holders are the first n candidates."""
    weak_target = 1.0 - min(1.0, (1.0 - target) * REPAIR_SLACK)
    repair = n
    for r in range(k + 1, n + 1):
        if _prob_from(dist[r], k) >= weak_target:
            repair = r
            break
    repair = max(repair, k + 1) if n > k else n
    success = max(repair + (n - repair + 1) // 2, min_n_for_k(k))
    if repair == n and n - k >= 2:
        # Target out of reach (a small grid): repair at the first loss, but let an upload
        # finish with a holder or two missing (repair tops it up), so that one dead or slow
        # peer does not fail every backup.
        success = max(n - max(1, (n - k) // 4), min_n_for_k(k))
    return repair, min(success, n)


def choose_code(availabilities: Sequence[float], target: float = DEFAULT_TARGET,
                max_k: int = 64, max_factor: float = 4.0) -> Code:
    """The k-of-n code with the smallest factor n/k meeting `target`.

    `availabilities` has one estimate per candidate supplier, in the caller's order of
    preference: a code with n fragments is placed on the first n of them. Limits: n <= 256,
    n <= candidates, k <= max_k (CPU), n/k <= max_factor, k <= 2n/3. When no code meets
    the target, the one with the highest availability within those limits is returned
    with meets_target False (ties: smaller factor).
    """
    _check_probability("target", target)
    for a in availabilities:
        _check_probability("availability", a)
    if max_k < 1:
        raise P2pbakError(f"max_k must be at least 1, got {max_k}")
    if max_factor < 2.0:  # below 2 a 1-of-2 code, the fallback of last resort, is excluded
        raise P2pbakError(f"max_factor must be at least 2, got {max_factor}")
    peers = min(len(availabilities), MAX_N)
    if peers < min_n_for_k(1):
        raise NotEnoughPeers(
            f"need at least {min_n_for_k(1)} supplier peers to place a pack, have {peers}")
    dist = _count_distributions(availabilities[:peers])
    best: tuple[float, int, int] | None = None  # (factor, n, k) among codes meeting target
    fallback: tuple[float, float, int, int] | None = None  # (-prob, factor, n, k)
    for k in range(1, min(max_k, peers) + 1):
        n_lo = min_n_for_k(k)
        n_hi = min(peers, math.floor(k * max_factor + 1e-9))
        for n in range(n_lo, n_hi + 1):
            prob = _prob_from(dist[n], k)
            if prob >= target:
                if best is None or (n / k, n) < best[:2]:
                    best = (n / k, n, k)
                break  # larger n for this k only raises the factor
            if fallback is None or (-prob, n / k) < fallback[:2]:
                fallback = (-prob, n / k, n, k)
    if best is not None:
        _, n, k = best
        meets = True
    else:
        assert fallback is not None  # peers >= 2 and max_factor >= 2 admit k=1, n=2
        _, _, n, k = fallback
        meets = False
    repair, success = _thresholds(k, n, dist, target)
    return Code(k=k, n=n, repair=repair, success=success, total=n,
                availability=_prob_from(dist[n], k), meets_target=meets)
