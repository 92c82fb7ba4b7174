"""A batched log-barrier Newton solver for the agents' constrained problems (Definition 1
where the closed form breaks a constraint): all constrained agents at once, in numpy.

Each agent: maximise the concave ln u(x), x = m0 + M·z (z = S/ω, the share supplied),
subject to linear constraints A·z ≤ b. Barrier: minimise −ln u − μ·Σ ln(b − A·z) for μ
falling tenfold per stage down to 1e-10 (so the optimum is within 13·μ of the utility's),
Newton steps with a feasibility-keeping backtracking search.
scipy's SLSQP (agents.solve_agent) is the per-agent reference it is tested against.
"""

from __future__ import annotations

import numpy as np

from p2pbak.market.ces import gradient, hessian, log_utility

MU0, MU_END, MU_STEP = 0.1, 1e-10, 0.03
MAX_NEWTON = 50
DECREMENT_TOL = 1e-12


def maximise(a: np.ndarray, rho: float, m0: np.ndarray, mm: np.ndarray, aa: np.ndarray,
             b: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """Maximise ln u(m0 + M·z) s.t. A·z ≤ b from a strictly feasible z0.
    Shapes: a (m,4), m0 (m,4), M (m,4,3), A (m,K,3), b (m,K), z0 (m,3) → z (m,3)."""
    z = z0.copy()
    mu = MU0
    while mu >= MU_END * 0.5:
        z = _centre(a, rho, m0, mm, aa, b, z, mu)
        mu *= MU_STEP
    return z


def _phi(a: np.ndarray, rho: float, m0: np.ndarray, mm: np.ndarray, aa: np.ndarray,
         b: np.ndarray, z: np.ndarray, mu: float) -> np.ndarray:
    x = m0 + np.einsum("mjk,mk->mj", mm, z)
    s = b - np.einsum("mkj,mj->mk", aa, z)
    bad = (s <= 0).any(axis=1) | (x <= 0).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = -log_utility(a, rho, np.where(x > 0, x, 1.0)) - \
            mu * np.log(np.where(s > 0, s, 1.0)).sum(axis=1)
    return np.where(bad, np.inf, val)


def _centre(a: np.ndarray, rho: float, m0: np.ndarray, mm: np.ndarray, aa: np.ndarray,
            b: np.ndarray, z: np.ndarray, mu: float) -> np.ndarray:
    """Newton's method on the barrier function for one μ."""
    active = np.ones(len(z), dtype=bool)
    for _ in range(MAX_NEWTON):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        za, ma, aaa, ba = z[idx], mm[idx], aa[idx], b[idx]
        x = m0[idx] + np.einsum("mjk,mk->mj", ma, za)
        s = ba - np.einsum("mkj,mj->mk", aaa, za)
        gf, hf = gradient(a[idx], rho, x), hessian(a[idx], rho, x)
        grad = -np.einsum("mjk,mj->mk", ma, gf) + mu * np.einsum("mkj,mk->mj", aaa, 1.0 / s)
        hess = -np.einsum("mji,mjk,mkl->mil", ma, hf, ma) + \
            mu * np.einsum("mki,mk,mkj->mij", aaa, 1.0 / s ** 2, aaa)
        step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        decrement = -(grad * step).sum(axis=1)
        done = decrement < DECREMENT_TOL
        z[idx] = za + _search(a[idx], rho, m0[idx], ma, aaa, ba, za, step, grad, mu) \
            * step * ~done[:, None]
        active[idx[done]] = False
    return z


def _search(a: np.ndarray, rho: float, m0: np.ndarray, mm: np.ndarray, aa: np.ndarray,
            b: np.ndarray, z: np.ndarray, step: np.ndarray, grad: np.ndarray,
            mu: float) -> np.ndarray:
    """Backtracking (Armijo) step lengths that keep every constraint strict, (m, 1)."""
    slope = (grad * step).sum(axis=1)
    base = _phi(a, rho, m0, mm, aa, b, z, mu)
    s = b - np.einsum("mkj,mj->mk", aa, z)
    rate = np.einsum("mkj,mj->mk", aa, step)
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(rate > 0, s / rate, np.inf).min(axis=1)
    t = np.minimum(1.0, 0.99 * room)  # the longest step that stays strictly inside
    for _ in range(40):
        trial = _phi(a, rho, m0, mm, aa, b, z + t[:, None] * step, mu)
        ok = trial <= base + 0.25 * t * slope
        if ok.all():
            return t[:, None]
        t = np.where(ok, t, t * 0.5)
    return np.where(ok, t, 0.0)[:, None]  # no descent left within rounding: stay
