"""The inner-loop (fine-tuning) operator T of docs/theory.md section 3.

For a kernel matrix K' = K_in(X', X') on the support inputs, adapting f on the support gives
``f_adapted(x) = f(x) + K_in(x, X') T (Y' - f(X'))`` with

- ``flow``:  T = K'^{-1} (I - exp(-lam tau K'))          gradient flow for time tau at rate lam
- ``steps``: T = K'^{-1} (I - (I - a K')^k)              k gradient steps of size a
- ``ridge``: T = (K' + mu I)^{-1}                        L2-regularised (proximal) head
- ``inf``:   T = (K' + eps I)^{-1}                       tau = infinity, small ridge eps
- ``none``:  T = 0                                       no inner loop

All are matrix functions ``g(K')`` computed by eigendecomposition; at eigenvalue 0 the first
two have the limits ``lam tau`` and ``a k``.

Scale (docs/theory.md section 7): with ``scale="diag"`` the rate of ``flow`` (and the step size of
``steps``) is divided by the mean diagonal ``kappa = mean_i K'_ii`` of the support kernel, i.e.
the inner loop runs on the normalised kernel K_in / kappa. For the NTK of a bias-free ReLU net,
kappa = L + 1, so a depth-normalised MAML inner loop adapts as much at every depth. The adapted
function is unchanged by this rewriting: K_in(x, X') T_{c / kappa}(K') = (K_in / kappa)(x, X')
T_c(K' / kappa).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ntk_bridge.closed_form.linalg import flow_operator, gd_operator, ridge_inverse
from ntk_bridge.errors import require

FORMS = ("flow", "steps", "ridge", "inf", "none")
SCALES = ("fixed", "diag")


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
    scale: str = "fixed"    # flow / steps: "diag" divides the rate by the support kernel's mean diagonal

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
        require(self.scale in SCALES, f"unknown inner-loop scale {self.scale!r}; choose one of {', '.join(SCALES)}")
        require(self.scale == "fixed" or self.form in ("flow", "steps"),
                f"inner-loop scale 'diag' applies to the flow and steps forms only (got form {self.form!r}); "
                "use --inner-scale fixed")

    def describe(self) -> str:
        per = " / kappa" if self.scale == "diag" else ""
        return {
            "flow": f"gradient flow lam*tau={self.lam * self.tau:g}{per}",
            "steps": f"{self.steps} steps of size {self.step_size:g}{per}",
            "ridge": f"ridge mu={self.mu:g}",
            "inf": f"tau=inf (eps={self.eps:g})",
            "none": "no inner loop (T=0)",
        }[self.form]

    def as_dict(self) -> dict:
        return asdict(self)

    def rate_divisor(self, kp: np.ndarray) -> np.ndarray | float:
        """kappa (..., 1) for ``scale="diag"`` (mean diagonal of each support kernel), else 1."""
        if self.scale == "fixed":
            return 1.0
        kappa = np.mean(np.diagonal(kp, axis1=-2, axis2=-1), axis=-1)[..., None]
        require(bool(np.all(kappa > 0)), "the support kernel has a zero diagonal; the 'diag' inner scale needs kappa > 0")
        return kappa

    def operator(self, kp: np.ndarray) -> np.ndarray:
        """T (..., n_s, n_s) for support kernel matrices ``kp`` = K_in(X', X') (..., n_s, n_s).

        A stack (one matrix per task) is decomposed in one batched ``eigh``.
        """
        kp = np.asarray(kp, dtype=np.float64)
        name = "support kernel matrix K_in(X', X')"
        if self.form == "none":
            return np.zeros_like(kp)
        if self.form == "ridge":
            return ridge_inverse(kp, self.mu, name, ridge_name="inner ridge mu (`inner_ridge`)")
        if self.form == "inf":
            return ridge_inverse(kp, self.eps, name, ridge_name="inner eps (`inner_eps`)")
        div = self.rate_divisor(kp)
        if self.form == "flow":
            return flow_operator(kp, self.lam * self.tau / div, name)
        return gd_operator(kp, self.step_size / div, self.steps, name, what="inner step size")
