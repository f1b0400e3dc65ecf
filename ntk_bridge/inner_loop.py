"""The inner-loop (fine-tuning) operator T of theory.md section 3.

For a kernel matrix K' = K_in(X', X') on the support inputs, adapting f on the support gives
``f_adapted(x) = f(x) + K_in(x, X') T (Y' - f(X'))`` with

- ``flow``:  T = K'^{-1} (I - exp(-lam tau K'))          gradient flow for time tau at rate lam
- ``steps``: T = K'^{-1} (I - (I - a K')^k)              k gradient steps of size a
- ``ridge``: T = (K' + mu I)^{-1}                        L2-regularised (proximal) head
- ``inf``:   T = (K' + eps I)^{-1}                       tau = infinity, small ridge eps
- ``none``:  T = 0                                       no inner loop

All are matrix functions ``g(K')`` computed by eigendecomposition; at eigenvalue 0 the first
two have the limits ``lam tau`` and ``a k``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ntk_bridge.errors import BridgeError, require
from ntk_bridge.linalg import matrix_function, psd_eigh, ridge_inverse

FORMS = ("flow", "steps", "ridge", "inf", "none")


@dataclass(frozen=True)
class InnerLoop:
    """Which inner loop, and its constants (only those of ``form`` are used)."""

    form: str = "flow"
    lam: float = 1.0        # flow: rate
    tau: float = 1.0        # flow: time
    step_size: float = 0.1  # steps: a
    steps: int = 10         # steps: k
    mu: float = 0.1         # ridge
    eps: float = 1e-6       # inf

    def __post_init__(self):
        require(self.form in FORMS, f"unknown inner-loop form {self.form!r}; choose one of {', '.join(FORMS)}")
        for name in ("lam", "tau", "step_size"):
            v = getattr(self, name)
            require(np.isfinite(v) and v >= 0, f"inner-loop {name} must be finite and >= 0 (got {v!r})")
        require(isinstance(self.steps, (int, np.integer)) and self.steps >= 0,
                f"inner-loop steps must be an integer >= 0 (got {self.steps!r})")
        require(np.isfinite(self.mu) and self.mu > 0 or self.form != "ridge",
                f"ridge inner loop needs mu > 0 (got {self.mu!r}); use form 'inf' for an unregularised fit")
        require(np.isfinite(self.eps) and self.eps > 0 or self.form != "inf",
                f"the tau = infinity inner loop needs a ridge eps > 0 (got {self.eps!r})")

    def describe(self) -> str:
        return {
            "flow": f"gradient flow lam*tau={self.lam * self.tau:g}",
            "steps": f"{self.steps} steps of size {self.step_size:g}",
            "ridge": f"ridge mu={self.mu:g}",
            "inf": f"tau=inf (eps={self.eps:g})",
            "none": "no inner loop (T=0)",
        }[self.form]

    def as_dict(self) -> dict:
        return asdict(self)

    def operator(self, kp: np.ndarray) -> np.ndarray:
        """T (n_s, n_s) for the support kernel matrix ``kp`` = K_in(X', X') (n_s, n_s)."""
        name = "support kernel matrix K_in(X', X')"
        if self.form == "none":
            return np.zeros_like(np.asarray(kp, dtype=np.float64))
        if self.form == "ridge":
            return ridge_inverse(kp, self.mu, name, ridge_name="inner ridge mu (--inner-ridge)")
        if self.form == "inf":
            return ridge_inverse(kp, self.eps, name, ridge_name="inner eps (--inner-eps)")
        if self.form == "flow":
            c = self.lam * self.tau
            return matrix_function(kp, lambda lam: _expm1_ratio(c, lam), name)
        # steps
        lam_max = float(psd_eigh(kp, name)[0].max())
        if self.step_size * lam_max >= 2.0:
            raise BridgeError(
                f"inner step size {self.step_size:g} diverges on this support kernel "
                f"(largest eigenvalue {lam_max:.4g}); use a step size below {2.0 / lam_max:.4g}")
        a, k = self.step_size, self.steps
        return matrix_function(kp, lambda lam: _steps_ratio(a, k, lam), name)


def _expm1_ratio(c: float, lam: np.ndarray) -> np.ndarray:
    """(1 - exp(-c lam)) / lam, with the limit c at lam = 0."""
    safe = np.where(lam > 0, lam, 1.0)
    return np.where(lam * c > 1e-12, -np.expm1(-c * safe) / safe, c * (1.0 - 0.5 * c * lam))


def _steps_ratio(a: float, k: int, lam: np.ndarray) -> np.ndarray:
    """(1 - (1 - a lam)^k) / lam, with the limit a k at lam = 0."""
    safe = np.where(lam > 0, lam, 1.0)
    with np.errstate(invalid="ignore"):
        # exact for 0 <= a lam < 1 (log1p keeps precision); (1 - a lam)^k is negative-based beyond 1
        val = np.where(a * safe < 1.0, -np.expm1(k * np.log1p(-a * safe)) / safe,
                       (1.0 - np.power(1.0 - a * safe, k)) / safe)
    return np.where(lam * a > 1e-12, val, a * k * (1.0 - 0.5 * (k - 1) * a * lam))
