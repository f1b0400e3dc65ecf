"""Matrix functions of symmetric PSD kernel matrices by eigendecomposition (float64).

Kernel matrices at depth are nearly rank one, so every solve goes through ``eigh`` with an
explicit function of the eigenvalues instead of ``inv`` or ``solve``: ``g(M) = V g(lambda) V^T``
(docs/theory.md section 3). Rounding can make tiny eigenvalues of a PSD matrix negative; those
are set to zero, and a matrix that is clearly indefinite is refused.

Every function takes one matrix (n, n) or a stack (..., n, n) (one per task: the stack is
decomposed in one batched ``eigh`` call). :func:`apply_function` applies ``g(M)`` to right-hand
sides without forming ``g(M)``: ``V (g(lambda) * (V^T R))``.

The eigenvalue maps (``g``):

- :func:`flow_ratio`   (1 - exp(-c lam)) / lam             gradient flow for time c
- :func:`gd_ratio`     (1 - (1 - lr lam)^S) / lam           S gradient steps of size lr
- :func:`ridge_map`    1 / (lam + ridge)                    with a condition-number check

:func:`ridge_solve` applies ``(M + ridge I)^{-1}`` by a Cholesky factorisation (about n^3 / 3 flops
against eigh's ~9 n^3) when that is provably the same solve: ``M + ridge I`` factorises, LAPACK's
condition estimate is at most :data:`CHOLESKY_MAX_COND` (so the two solves agree to ~cond * n * eps,
1e-12 relative or better) and the ridge is at most 1e-5 of the largest diagonal entry (so M itself
is positive definite: the eigh route would neither clip an eigenvalue nor refuse the matrix);
otherwise it takes the eigh route with its checks and messages.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ntk_bridge.errors import BridgeError

PSD_RTOL = 1e-8
MAX_COND = 1e13
CHOLESKY_MAX_COND = 1e4

EigenMap = Callable[[np.ndarray], np.ndarray]


def psd_eigh(m: np.ndarray, name: str = "kernel matrix") -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (..., n) clipped at 0 and eigenvectors (..., n, n) of symmetric PSD ``m``."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise BridgeError(f"{name} must be square; got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise BridgeError(f"{name} contains NaN or inf; check the kernel settings (W_std, b_std, depth)")
    lam, vec = np.linalg.eigh(0.5 * (m + np.swapaxes(m, -1, -2)))
    scale = np.maximum(np.abs(lam).max(axis=-1), 1e-300)
    bad = lam.min(axis=-1) < -PSD_RTOL * scale
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
        lo, hi = lam[i].min(), lam[i].max()
        where = f" (matrix {i[0] if len(i) == 1 else i} of the stack)" if bad.ndim else ""
        raise BridgeError(
            f"{name}{where} is not positive semi-definite (smallest eigenvalue {lo:.3g}, "
            f"largest {hi:.3g}); it must be a kernel Gram matrix")
    return np.clip(lam, 0.0, None), vec


def _finite(vals: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(vals)):
        raise BridgeError(f"a matrix function of the {name} is not finite; raise its ridge")
    return vals


def matrix_function(m: np.ndarray, g: EigenMap, name: str = "kernel matrix") -> np.ndarray:
    """``V diag(g(lambda)) V^T`` for symmetric PSD ``m`` (..., n, n)."""
    lam, vec = psd_eigh(m, name)
    vals = _finite(g(lam), name)
    return (vec * vals[..., None, :]) @ np.swapaxes(vec, -1, -2)


def apply_function(m: np.ndarray, g: EigenMap, rhs: np.ndarray, name: str = "kernel matrix") -> np.ndarray:
    """``g(m) @ rhs`` as ``V (g(lambda) * (V^T rhs))``; ``m`` (n, n), ``rhs`` (n,) or (n, k)."""
    lam, vec = psd_eigh(m, name)
    vals = _finite(g(lam), name)
    rhs = np.asarray(rhs, np.float64)
    coef = vec.T @ rhs
    return vec @ (vals[:, None] * coef if rhs.ndim == 2 else vals * coef)


def ridge_map(ridge: float, name: str = "kernel matrix", ridge_name: str = "ridge",
              max_cond: float = MAX_COND) -> EigenMap:
    """``lam -> 1 / (lam + ridge)``; refuses a solve that float64 cannot carry.

    The returned map raises a one-line error naming the ridge to raise when
    ``cond(m + ridge I) > max_cond`` (beyond that the solution is rounding noise).
    """
    if not (np.isfinite(ridge) and ridge >= 0):
        raise BridgeError(f"{ridge_name} for the {name} must be finite and >= 0 (got {ridge!r})")

    def g(lam: np.ndarray) -> np.ndarray:
        shifted = lam + ridge
        top = shifted.max(axis=-1)
        low = shifted.min(axis=-1)
        if np.any(low <= 0) or np.any(top / np.maximum(low, 1e-300) > max_cond):
            cond = float(np.max(top / np.maximum(low, 1e-300)))
            need = float(np.max(top)) / max_cond
            raise BridgeError(
                f"the {name} is singular to float64 precision with {ridge_name} {ridge:g} "
                f"(condition number {cond:.2e}); raise the {ridge_name} to at least {need:.2g}")
        return 1.0 / shifted

    return g


def _cholesky_solve(m: np.ndarray, ridge: float, rhs: np.ndarray) -> np.ndarray | None:
    """``(m + ridge I)^{-1} rhs`` by Cholesky when that is the eigh route's answer (module
    docstring), else None. ``m`` (n, n) symmetric, ``rhs`` (n,) or (n, k)."""
    from scipy.linalg import lapack

    m = np.asarray(m, np.float64)
    top = float(np.max(np.diagonal(m))) if m.size else 0.0
    if not (np.all(np.isfinite(m)) and top > 0 and ridge <= 1e-5 * top):
        return None
    a = 0.5 * (m + m.T)
    a[np.diag_indices_from(a)] += ridge
    anorm = float(np.abs(a).sum(axis=0).max())
    c, info = lapack.dpotrf(a, lower=True, clean=False)
    if info != 0:
        return None
    rcond, info = lapack.dpocon(c, anorm, uplo="L")
    if info != 0 or not rcond * CHOLESKY_MAX_COND >= 1.0:
        return None
    rhs = np.asarray(rhs, np.float64)
    x, info = lapack.dpotrs(c, rhs.reshape(rhs.shape[0], -1), lower=True)
    return x.reshape(rhs.shape) if info == 0 else None


def ridge_solve(m: np.ndarray, ridge: float, rhs: np.ndarray, name: str = "kernel matrix",
                ridge_name: str = "ridge", max_cond: float = MAX_COND) -> np.ndarray:
    """``(m + ridge I)^{-1} rhs`` for symmetric PSD ``m`` (n, n): by Cholesky where that is the
    same solve (module docstring), else by eigh with :func:`ridge_map`'s checks."""
    if np.isfinite(ridge) and ridge >= 0:
        x = _cholesky_solve(m, ridge, rhs)
        if x is not None:
            return x
    return apply_function(m, ridge_map(ridge, name, ridge_name, max_cond), rhs, name)


def ridge_inverse(m: np.ndarray, ridge: float, name: str = "kernel matrix", max_cond: float = MAX_COND,
                  ridge_name: str = "ridge") -> np.ndarray:
    """``(m + ridge I)^{-1}`` by eigendecomposition, with :func:`ridge_map`'s condition check."""
    return matrix_function(m, ridge_map(ridge, name, ridge_name, max_cond), name)


def flow_ratio(c, lam: np.ndarray) -> np.ndarray:
    """(1 - exp(-c lam)) / lam elementwise (gradient flow for time c), with the limit c at lam = 0.

    ``c`` is a scalar or an array broadcasting against ``lam`` (one time per matrix of a stack).
    """
    lam = np.asarray(lam, np.float64)
    c = np.asarray(c, np.float64)
    safe = np.where(lam > 0, lam, 1.0)
    return np.where(lam * c > 1e-12, -np.expm1(-c * safe) / safe, c * (1.0 - 0.5 * c * lam))


def gd_ratio(lr, steps: int, lam: np.ndarray) -> np.ndarray:
    """(1 - (1 - lr lam)^S) / lam elementwise (S gradient steps of size lr), limit lr S at lam = 0."""
    lam = np.asarray(lam, np.float64)
    x = np.asarray(lr, np.float64) * lam
    safe = np.where(lam > 0, lam, 1.0)
    # for lr lam < 1 use expm1/log1p (no cancellation at small lam); beyond, the power is exact
    small = x < 1.0
    p = np.where(small, -np.expm1(steps * np.log1p(-np.where(small, x, 0.0))),
                 1.0 - np.power(1.0 - x, steps))
    return np.where(x > 1e-12, p / safe, lr * steps * (1.0 - 0.5 * (steps - 1) * x))


def gd_map(lr, steps: int, name: str = "kernel matrix", what: str = "learning rate") -> EigenMap:
    """``lam -> gd_ratio(lr, steps, lam)``; refuses lr >= 2 / lam_max (divergent gradient descent)."""

    def g(lam: np.ndarray) -> np.ndarray:
        x = np.asarray(lr, np.float64) * lam.max(axis=-1, keepdims=True)
        if np.any(x >= 2.0):
            j = int(np.argmax(x))
            lam_max = float(lam.max(axis=-1).reshape(-1)[j])
            lr_j = float(np.broadcast_to(np.asarray(lr, np.float64), x.shape).reshape(-1)[j])
            raise BridgeError(
                f"{what} {lr_j:g} diverges on the {name} (largest eigenvalue {lam_max:.4g}); "
                f"use a {what} below {2.0 / lam_max:.4g}")
        return gd_ratio(lr, steps, lam)

    return g


def flow_operator(m: np.ndarray, c, name: str = "kernel matrix") -> np.ndarray:
    """M^{-1} (I - exp(-c M)) for symmetric PSD M (..., n, n): gradient flow for time c, from zero."""
    return matrix_function(m, lambda lam: flow_ratio(c, lam), name)


def gd_operator(m: np.ndarray, lr, steps: int, name: str = "kernel matrix",
                what: str = "learning rate") -> np.ndarray:
    """M^{-1} (I - (I - lr M)^S) for symmetric PSD M (..., n, n); refuses lr >= 2 / lam_max."""
    return matrix_function(m, gd_map(lr, steps, name, what), name)
