"""Closed-form infinite-width predictors of MTL and GBML on unseen tasks (theory.md 3-5).

One call signature for every method::

    predict(method, tasks, gram, config, f0=None) -> (n_test_tasks, n_q, c)

``gram`` holds Theta and K over ``tasks.points`` (every training and test point, see
:class:`ntk_bridge.tasks.TaskSet`), so one kernel evaluation serves all methods.

Methods
-------
``maml``      GBML with K_in = Theta (Meta-NTK, theory.md 4)
``anil``      GBML with K_in = K, outer kernel Theta
``mtl-b``     MTL, shared head initialisation (theory.md 5, variant B)
``mtl-a``     MTL, independent heads: K T' Y' whatever the training tasks (variant A)
``head-only`` the baseline K(X, X') T' Y' (fit the head on the test support only)
``ntk``       plain NTK regression on the training queries (one network, no inner loop);
              equals GBML with T = 0

Outer training is gradient flow at rate ``eta`` for time ``t`` on (1/2) sum ||f - Y||^2:
``O(M) = M^{-1} (I - exp(-eta t M))``; for ``t = inf``, ``O(M) = (M + ridge I)^{-1}``; with
``outer_steps = S``, S gradient steps of size ``eta t / S``: ``M^{-1} (I - (I - eta t M / S)^S)``.
``f0`` (n_total, c), optional, are the network outputs at initialisation (theory.md 4-5, the
f_0 terms); omitted, f_0 = 0 (as for a centred network).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.linalg import block_diag

from ntk_bridge.errors import require
from ntk_bridge.inner_loop import InnerLoop
from ntk_bridge.kernels import Kernels
from ntk_bridge.linalg import flow_operator, gd_operator, ridge_inverse
from ntk_bridge.tasks import TaskSet

METHODS = ("mtl-a", "mtl-b", "anil", "maml", "head-only", "ntk")
GBML_METHODS = ("anil", "maml")


@dataclass(frozen=True)
class PredictorConfig:
    """Inner loop, and outer training (gradient flow for time ``outer_time`` at rate ``outer_rate``)."""

    inner: InnerLoop = field(default_factory=InnerLoop)
    outer_time: float = math.inf
    outer_rate: float = 1.0
    outer_ridge: float = 1e-8
    outer_steps: int | None = None   # None: gradient flow; S: S gradient steps of size eta t / S

    def __post_init__(self):
        require(isinstance(self.inner, InnerLoop), "PredictorConfig.inner must be an InnerLoop")
        require(self.outer_time >= 0, f"outer_time must be >= 0 (got {self.outer_time!r})")
        require(np.isfinite(self.outer_rate) and self.outer_rate > 0, f"outer_rate must be > 0 (got {self.outer_rate!r})")
        require(self.outer_steps is None or (isinstance(self.outer_steps, (int, np.integer))
                                             and self.outer_steps >= 0 and np.isfinite(self.outer_time)),
                f"outer_steps must be None or an integer >= 0 with a finite outer_time (got {self.outer_steps!r})")
        require(np.isfinite(self.outer_ridge) and self.outer_ridge >= 0,
                f"outer_ridge must be finite and >= 0 (got {self.outer_ridge!r}); a negative ridge is not a regulariser")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["outer_time"] = str(self.outer_time) if not np.isfinite(self.outer_time) else self.outer_time
        return d


def outer_operator(m: np.ndarray, config: PredictorConfig, name: str) -> np.ndarray:
    """O(M): gradient flow M^{-1} (I - exp(-eta t M)); S discrete steps of size eta t / S,
    M^{-1} (I - (I - (eta t / S) M)^S), when ``outer_steps`` = S; (M + ridge I)^{-1} for t = inf."""
    if not np.isfinite(config.outer_time):
        return ridge_inverse(m, config.outer_ridge, name, ridge_name="outer ridge (--outer-ridge)")
    c = config.outer_rate * config.outer_time
    if config.outer_steps is None:
        return flow_operator(m, c, name)
    if config.outer_steps == 0:
        return np.zeros_like(m)
    return gd_operator(m, c / config.outer_steps, config.outer_steps, name, what="outer learning rate")


def _check(method: str, tasks: TaskSet, gram: Kernels, f0):
    require(method in METHODS, f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    n = tasks.points.shape[0]
    for name in ("theta", "k"):
        shape = getattr(gram, name).shape
        require(shape == (n, n), f"gram.{name} has shape {shape} but the task set has {n} points; "
                                 "compute the kernels on tasks.points")
    if f0 is not None:
        f0 = np.asarray(f0, np.float64)
        f0 = f0[:, None] if f0.ndim == 1 else f0
        c = tasks.train[0].y_query.shape[1]
        require(f0.shape == (n, c), f"f0 must have shape ({n}, {c}) (one initial output per point); got {f0.shape}")
    return f0


def _adapt(kin: np.ndarray, q: np.ndarray, s: np.ndarray, inner: InnerLoop, resid: np.ndarray) -> np.ndarray:
    """K_in(X, X') T (resid) for one task: the inner-loop correction on its query rows."""
    t = inner.operator(kin[np.ix_(s, s)])
    return kin[np.ix_(q, s)] @ t @ resid


def _a_matrix(kin: np.ndarray, q: np.ndarray, s: np.ndarray, inner: InnerLoop) -> np.ndarray:
    """A = [I, -K_in(X, X') T] (n_q, n_q + n_s), acting on f([X; X'])."""
    t = inner.operator(kin[np.ix_(s, s)])
    return np.concatenate([np.eye(len(q)), -kin[np.ix_(q, s)] @ t], axis=1)


def meta_ntk(method: str, tasks: TaskSet, gram: Kernels, inner: InnerLoop) -> tuple[np.ndarray, np.ndarray]:
    """Meta-NTK ``Phi = A Theta(Z, Z) A^T`` (N n_q, N n_q) and the block-diagonal ``A`` (theory.md 4).

    ``A_i = [I, -K_in(X_i, X'_i) T_i]`` with K_in = Theta for ``maml`` and K for ``anil``.
    """
    require(method in GBML_METHODS, f"the Meta-NTK is defined for {', '.join(GBML_METHODS)}; got {method!r}")
    kin = gram.theta if method == "maml" else gram.k
    a = block_diag(*[_a_matrix(kin, q, s, inner) for q, s in zip(tasks.train_q, tasks.train_s)])
    z = tasks.train_z.reshape(-1)
    phi = a @ gram.theta[np.ix_(z, z)] @ a.T
    return phi, a


def adaptation_only(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig) -> np.ndarray:
    """The t = 0 predictor K_in(X, X') T' Y' (Theta for MAML, K otherwise), (n_test, n_q, c)."""
    kin = gram.theta if method == "maml" else gram.k
    ys = tasks.test_y_support()
    return np.stack([_adapt(kin, q, s, config.inner, ys[j])
                     for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s))])


def predict(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig = PredictorConfig(),
            f0: np.ndarray | None = None) -> np.ndarray:
    """Test-query predictions (n_test_tasks, n_q, c) of ``method`` (see module docstring)."""
    f0 = _check(method, tasks, gram, f0)
    theta, k = gram.theta, gram.k
    inner = config.inner
    ys_test = tasks.test_y_support()
    c = ys_test.shape[-1]
    zero = np.zeros((tasks.points.shape[0], c)) if f0 is None else f0

    if method in ("head-only", "mtl-a"):      # the same formula: f0(X) + K T' (Y' - f0(X'))
        return np.stack([zero[q] + _adapt(k, q, s, inner, ys_test[j] - zero[s])
                         for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s))])

    if method == "ntk":
        qi = tasks.train_q.reshape(-1)
        weights = outer_operator(theta[np.ix_(qi, qi)], config, "NTK Gram matrix Theta(X_train, X_train)") @ (
            tasks.train_y_query().reshape(-1, c) - zero[qi])
        return np.stack([zero[q] + theta[np.ix_(q, qi)] @ weights for q in tasks.test_q])

    z = tasks.train_z.reshape(-1)
    if method in GBML_METHODS:
        kin = theta if method == "maml" else k
        phi, a = meta_ntk(method, tasks, gram, inner)
        yq = tasks.train_y_query().reshape(-1, c)
        resid = yq - a @ zero[z]
        ys_train = tasks.train_y_support()
        g = np.concatenate([_adapt(kin, q, s, inner, ys_train[i])
                            for i, (q, s) in enumerate(zip(tasks.train_q, tasks.train_s))])
        weights = a.T @ (outer_operator(phi, config, f"Meta-NTK Phi ({method})") @ (resid - g))
        out = []
        for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s)):
            zt = np.concatenate([q, s])
            at = _a_matrix(kin, q, s, inner)
            out.append(_adapt(kin, q, s, inner, ys_test[j]) + at @ zero[zt] + at @ theta[np.ix_(zt, z)] @ weights)
        return np.stack(out)

    # mtl-b: Theta_MTL((x, i), (x', j)) = Theta_b(x, x') + 1[i = j] K(x, x')
    task_id = np.repeat(np.arange(len(tasks.train)), tasks.train_z.shape[1])
    same = task_id[:, None] == task_id[None, :]
    theta_b = theta - k
    theta_mtl = theta_b[np.ix_(z, z)] + same * k[np.ix_(z, z)]
    u = np.concatenate([np.concatenate([t.y_query, t.y_support]) for t in tasks.train])
    weights = outer_operator(theta_mtl, config, "MTL kernel Theta_MTL") @ (u - zero[z])
    out = []
    for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s)):
        t_test = inner.operator(k[np.ix_(s, s)])
        ktt = k[np.ix_(q, s)] @ t_test
        transfer = (theta_b[np.ix_(q, z)] - ktt @ theta_b[np.ix_(s, z)]) @ weights
        out.append(ktt @ ys_test[j] + zero[q] - ktt @ zero[s] + transfer)
    return np.stack(out)
