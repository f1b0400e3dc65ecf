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

from ntk_bridge.errors import require
from ntk_bridge.linalg import flow_operator, gd_operator, ridge_inverse

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
            return flow_operator(kp, self.lam * self.tau, name)
        return gd_operator(kp, self.step_size, self.steps, name, what="inner step size")
