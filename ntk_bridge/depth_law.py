"""The derived depth law of the MTL-GBML distance (docs/theory.md section 8), as functions.

Deep bias-free ReLU networks (W_std^2 = 2): K -> J (all ones) with an input-dependent part of
relative order L^-3 and Theta -> (L + 1)(J/4 + 3 I_same / 4) with an input-dependent part of
relative order 1/L. The inner loop on K leaves a fraction ``r_1`` of any constant function
(:func:`constant_residual`), and

    d_rel(MTL-A, ANIL) ~ c / L,   d_rel(MTL-B, ANIL) ~ a / L + b r_1,
    d_tr(MTL-B, ANIL) ~ (a / L + b r_1) / (c / L + e r_1^2),   d_rel(MTL-B, MAML) -> constant.

:data:`EXPONENTS` lists the exponents of each regime; :func:`mtl_anil_plateau` is the constant
b r_1 computed from the task draw, with nothing fitted.
"""

from __future__ import annotations

import math

import numpy as np

from ntk_bridge.inner_loop import InnerLoop
from ntk_bridge.tasks import TaskSet

# exponent of each quantity in L; "mean removed": L << L* = a / (b r_1); "plateau": L* << L << L** = c / (e r_1^2)
EXPONENTS = {
    "mean removed": {("d_rel", "mtl-a vs anil"): -1.0, ("d_rel", "mtl-b vs anil"): -1.0,
                     ("d_tr", "mtl-b vs anil"): 0.0, ("d_rel", "mtl-b vs maml"): 0.0},
    "plateau": {("d_rel", "mtl-a vs anil"): -1.0, ("d_rel", "mtl-b vs anil"): 0.0,
                ("d_tr", "mtl-b vs anil"): 1.0, ("d_rel", "mtl-b vs maml"): 0.0},
}


def constant_residual(inner: InnerLoop, lambda_1: float) -> float:
    """r_1 = 1 - lambda_1 g(lambda_1): what the inner loop leaves of a constant function.

    ``lambda_1`` is the support kernel's top eigenvalue (about n_s at depth, the constant
    direction): exp(-lam tau lambda_1) for flow, (1 - a lambda_1)^k for steps, mu / (lambda_1 + mu)
    for ridge, eps / (lambda_1 + eps) for tau = inf, 1 for no inner loop.
    """
    c = inner.lam * inner.tau
    return {
        "flow": lambda: math.exp(-c * lambda_1),
        "steps": lambda: (1.0 - inner.step_size * lambda_1) ** inner.steps,
        "ridge": lambda: inner.mu / (lambda_1 + inner.mu),
        "inf": lambda: inner.eps / (lambda_1 + inner.eps),
        "none": lambda: 1.0,
    }[inner.form]()


def mtl_anil_plateau(tasks: TaskSet, r_1: float, f_anil: np.ndarray) -> float:
    """The deep limit b r_1 of d_rel(MTL-B, ANIL): r_1 kappa |m_U| sqrt(#test queries) / ||F_ANIL||.

    m_U is the mean of every training label (queries and supports), kappa = N n_z / (N n_z + 3)
    with N n_z the number of training points; ``f_anil`` (n_test, n_q, c) are ANIL's predictions.
    """
    u = np.concatenate([np.concatenate([t.y_query, t.y_support]) for t in tasks.train])
    kappa = u.shape[0] / (u.shape[0] + 3.0)
    return float(r_1 * kappa * abs(u.mean()) * math.sqrt(f_anil.size) / np.linalg.norm(f_anil))
