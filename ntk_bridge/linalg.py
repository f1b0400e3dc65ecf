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
