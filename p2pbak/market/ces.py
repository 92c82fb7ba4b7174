"""ln of the CES utility u = (Σ a_j x_j^ρ)^{1/ρ} (Cobb-Douglas at ρ = 0), its gradient and
Hessian, batched over agents: x and a are (m, k). ln u has the same maximiser as u and is
concave for every ρ < 1."""

from __future__ import annotations

import numpy as np

COBB_DOUGLAS = 1e-6  # |ρ| below this: the ρ → 0 limit (the general form loses precision)


def _cd(rho: float) -> bool:
    return abs(rho) < COBB_DOUGLAS


def log_utility(a: np.ndarray, rho: float, x: np.ndarray) -> np.ndarray:
    """(m,)"""
    if _cd(rho):
        return (a * np.log(x)).sum(axis=-1) / a.sum(axis=-1)
    return np.log((a * x ** rho).sum(axis=-1)) / rho


def gradient(a: np.ndarray, rho: float, x: np.ndarray) -> np.ndarray:
    """(m, k): ∂ln u/∂x_j = a_j x_j^{ρ−1} / Σ a x^ρ."""
    if _cd(rho):
        return a / (x * a.sum(axis=-1, keepdims=True))
    return a * x ** (rho - 1.0) / (a * x ** rho).sum(axis=-1, keepdims=True)


def hessian(a: np.ndarray, rho: float, x: np.ndarray) -> np.ndarray:
    """(m, k, k): diag((ρ−1)·a x^{ρ−2} / Σ a x^ρ) − ρ·∇∇ᵀ."""
    eye = np.eye(x.shape[-1])
    if _cd(rho):
        return -np.einsum("mj,jk->mjk", a / (x * x * a.sum(axis=-1, keepdims=True)), eye)
    grad = gradient(a, rho, x)
    diag = (rho - 1.0) * grad / x
    return np.einsum("mj,jk->mjk", diag, eye) - rho * grad[:, :, None] * grad[:, None, :]
