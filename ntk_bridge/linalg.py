"""Matrix functions of symmetric PSD kernel matrices by eigendecomposition (float64).

Kernel matrices at depth are nearly rank one, so every solve goes through ``eigh`` with an
explicit function of the eigenvalues instead of ``inv`` or ``solve``: ``g(M) = V g(lambda) V^T``.
Rounding can make tiny eigenvalues of a PSD matrix negative; those are set to zero, and a
matrix that is clearly indefinite is refused.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ntk_bridge.errors import BridgeError

PSD_RTOL = 1e-8


def psd_eigh(m: np.ndarray, name: str = "kernel matrix") -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of a symmetric PSD matrix (n, n)."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise BridgeError(f"{name} must be square; got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise BridgeError(f"{name} contains NaN or inf; check the kernel settings (W_std, b_std, depth)")
    lam, vec = np.linalg.eigh(0.5 * (m + m.T))
    scale = max(float(np.abs(lam).max()), 1e-300)
    if lam.min() < -PSD_RTOL * scale:
        raise BridgeError(
            f"{name} is not positive semi-definite (smallest eigenvalue {lam.min():.3g}, "
            f"largest {lam.max():.3g}); it must be a kernel Gram matrix")
    return np.clip(lam, 0.0, None), vec


def matrix_function(m: np.ndarray, g: Callable[[np.ndarray], np.ndarray], name: str = "kernel matrix") -> np.ndarray:
    """``V diag(g(lambda)) V^T`` for symmetric PSD ``m`` (n, n)."""
    lam, vec = psd_eigh(m, name)
    vals = g(lam)
    if not np.all(np.isfinite(vals)):
        raise BridgeError(f"a matrix function of the {name} is not finite; raise its ridge")
    return (vec * vals) @ vec.T


def ridge_inverse(m: np.ndarray, ridge: float, name: str = "kernel matrix", max_cond: float = 1e13,
                  ridge_name: str = "ridge") -> np.ndarray:
    """``(m + ridge I)^{-1}`` by eigendecomposition; refuses a solve that float64 cannot carry.

    Raises a one-line error naming the ridge to raise when ``cond(m + ridge I) > max_cond``
    (beyond that the solution is rounding noise and later NaNs are likely).
    """
    if not (np.isfinite(ridge) and ridge >= 0):
        raise BridgeError(f"{ridge_name} for the {name} must be finite and >= 0 (got {ridge!r})")
    lam, vec = psd_eigh(m, name)
    shifted = lam + ridge
    top = float(shifted.max())
    if shifted.min() <= 0 or top / shifted.min() > max_cond:
        need = top / max_cond
        raise BridgeError(
            f"the {name} is singular to float64 precision with {ridge_name} {ridge:g} "
            f"(condition number {top / max(shifted.min(), 1e-300):.2e}); raise the {ridge_name} to at least {need:.2g}")
    return (vec / shifted) @ vec.T


def flow_ratio(c: float, lam: np.ndarray) -> np.ndarray:
    """(1 - exp(-c lam)) / lam elementwise (gradient flow for time c), with the limit c at lam = 0."""
    lam = np.asarray(lam, np.float64)
    safe = np.where(lam > 0, lam, 1.0)
    return np.where(lam * c > 1e-12, -np.expm1(-c * safe) / safe, c * (1.0 - 0.5 * c * lam))


def gd_ratio(lr: float, steps: int, lam: np.ndarray) -> np.ndarray:
    """(1 - (1 - lr lam)^S) / lam elementwise (S gradient steps of size lr), limit lr S at lam = 0."""
    lam = np.asarray(lam, np.float64)
    x = lr * lam
    safe = np.where(lam > 0, lam, 1.0)
    # for lr lam < 1 use expm1/log1p (no cancellation at small lam); beyond, the power is exact
    small = x < 1.0
    p = np.where(small, -np.expm1(steps * np.log1p(-np.where(small, x, 0.0))),
                 1.0 - np.power(1.0 - x, steps))
    return np.where(x > 1e-12, p / safe, lr * steps * (1.0 - 0.5 * (steps - 1) * x))


def flow_operator(m: np.ndarray, c: float, name: str = "kernel matrix") -> np.ndarray:
    """M^{-1} (I - exp(-c M)) for symmetric PSD M: gradient flow for time c, from zero."""
    return matrix_function(m, lambda lam: flow_ratio(c, lam), name)


def gd_operator(m: np.ndarray, lr: float, steps: int, name: str = "kernel matrix",
                what: str = "learning rate") -> np.ndarray:
    """M^{-1} (I - (I - lr M)^S) for symmetric PSD M; refuses lr >= 2 / lam_max (divergent GD)."""
    lam, vec = psd_eigh(m, name)
    lam_max = float(lam.max())
    if lr * lam_max >= 2.0:
        raise BridgeError(
            f"{what} {lr:g} diverges on the {name} (largest eigenvalue {lam_max:.4g}); "
            f"use a {what} below {2.0 / lam_max:.4g}")
    return (vec * gd_ratio(lr, steps, lam)) @ vec.T
