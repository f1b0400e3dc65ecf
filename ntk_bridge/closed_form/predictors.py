"""Closed-form infinite-width predictors of MTL and GBML on unseen tasks (docs/theory.md 3-5).

One call signature for every method::

    predict(method, tasks, gram, config, f0=None) -> (n_test_tasks, n_q, c)

``gram`` holds Theta and K over ``tasks.points`` (every training and test point, see
:class:`ntk_bridge.closed_form.tasks.TaskSet`), so one kernel evaluation serves all methods.

Methods
-------
``maml``      GBML with K_in = Theta (Meta-NTK, docs/theory.md 4)
``anil``      GBML with K_in = K, outer kernel Theta
``mtl-b``     MTL, shared head initialisation (docs/theory.md 5, variant B)
``mtl-a``     MTL, independent heads: K T' Y' whatever the training tasks (variant A)
``head-only`` the baseline K(X, X') T' Y' (fit the head on the test support only)
``ntk``       plain NTK regression on the training queries (one network, no inner loop);
              equals GBML with T = 0

Outer training is gradient flow at rate ``eta`` for time ``t`` on (1/2) sum ||f - Y||^2:
``O(M) = M^{-1} (I - exp(-eta t M))``; for ``t = inf``, ``O(M) = (M + ridge I)^{-1}``; with
``outer_steps = S``, S gradient steps of size ``eta t / S``: ``M^{-1} (I - (I - eta t M / S)^S)``.
With ``outer_scale = "diag"`` the rate is divided by the mean NTK diagonal over the training
points, kappa_out = mean_x Theta(x, x) (docs/theory.md 7: a learning rate scaled like 1 / depth).
``f0`` (n_total, c), optional, are the network outputs at initialisation (docs/theory.md 4-5, the
f_0 terms); omitted, f_0 = 0 (as for a centred network).

Computation: every task's inner-loop operator comes from one batched eigendecomposition of the
stacked support kernels, and the outer operators are applied to their right-hand sides
(``V (g(lambda) * V^T r)``), never formed; at ``t = inf`` the outer solve is a Cholesky one when
it is the same solve (:func:`ntk_bridge.closed_form.linalg.ridge_solve`), which puts one draw near
the floor of three Cholesky solves (Phi of ANIL and of MAML, Theta_MTL; experiments/bench_predictors.py). The per-task projection
``A_i = [I, -K_in(X_i, X'_i) T_i]`` is applied to rows as ``M[q_i] - P_i M[s_i]`` with
``P_i = K_in(X_i, X'_i) T_i``, so no block matrix is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.linalg import apply_function, flow_ratio, gd_map, ridge_map, ridge_solve
from ntk_bridge.closed_form.tasks import TaskSet
from ntk_bridge.engine.spec import Kernels
from ntk_bridge.errors import require

METHODS = ("mtl-a", "mtl-b", "anil", "maml", "head-only", "ntk")
GBML_METHODS = ("anil", "maml")
# the method pairs every study compares: MTL-B vs each GBML method, and MTL-A vs ANIL (the collapse check)
PAIRS = (("mtl-b", "anil"), ("mtl-b", "maml"), ("mtl-a", "anil"))
OUTER_SCALES = ("fixed", "diag")


@dataclass(frozen=True)
class PredictorConfig:
    """Inner loop, and outer training (gradient flow for time ``outer_time`` at rate ``outer_rate``)."""

    inner: InnerLoop = field(default_factory=InnerLoop)
    outer_time: float = math.inf
    outer_rate: float = 1.0
    outer_ridge: float = 1e-6
    outer_steps: int | None = None   # None: gradient flow; S: S gradient steps of size eta t / S
    outer_scale: str = "fixed"       # "diag": rate divided by the mean NTK diagonal kappa_out

    def __post_init__(self):
        require(isinstance(self.inner, InnerLoop), "PredictorConfig.inner must be an InnerLoop")
        require(self.outer_time >= 0, f"outer_time must be >= 0 (got {self.outer_time!r})")
        require(np.isfinite(self.outer_rate) and self.outer_rate > 0, f"outer_rate must be > 0 (got {self.outer_rate!r})")
        require(self.outer_steps is None or (isinstance(self.outer_steps, (int, np.integer))
                                             and self.outer_steps >= 0 and np.isfinite(self.outer_time)),
                f"outer_steps must be None or an integer >= 0 with a finite outer_time (got {self.outer_steps!r})")
        require(np.isfinite(self.outer_ridge) and self.outer_ridge >= 0,
                f"outer_ridge must be finite and >= 0 (got {self.outer_ridge!r}); a negative ridge is not a regulariser")
        require(self.outer_scale in OUTER_SCALES,
                f"unknown outer scale {self.outer_scale!r}; choose one of {', '.join(OUTER_SCALES)}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["outer_time"] = str(self.outer_time) if not np.isfinite(self.outer_time) else self.outer_time
        return d

    def describe(self) -> str:
        per = " / kappa_out" if self.outer_scale == "diag" and np.isfinite(self.outer_time) else ""
        return f"inner: {self.inner.describe()}, outer eta*t={self.outer_rate * self.outer_time:g}{per}"


# ----------------------------------------------------------------------------- outer operator

def _outer_map(config: PredictorConfig, kappa_out: float, name: str):
    """The eigenvalue map of O(M) (see module docstring); ``kappa_out`` divides the rate if "diag"."""
    if not np.isfinite(config.outer_time):
        return ridge_map(config.outer_ridge, name, ridge_name="outer ridge (`outer_ridge`)")
    c = config.outer_rate * config.outer_time / (kappa_out if config.outer_scale == "diag" else 1.0)
    if config.outer_steps is None:
        return lambda lam: flow_ratio(c, lam)
    if config.outer_steps == 0:
        return np.zeros_like
    return gd_map(c / config.outer_steps, config.outer_steps, name, what="outer learning rate")


def outer_solve(m: np.ndarray, rhs: np.ndarray, config: PredictorConfig, name: str,
                kappa_out: float = 1.0) -> np.ndarray:
    """O(M) @ rhs for the outer kernel ``m`` (n, n) and right-hand sides ``rhs`` (n, c); for
    ``t = inf`` a Cholesky solve where it equals the eigh one (:func:`ridge_solve`)."""
    if not np.isfinite(config.outer_time):
        return ridge_solve(m, config.outer_ridge, rhs, name, ridge_name="outer ridge (`outer_ridge`)")
    return apply_function(m, _outer_map(config, kappa_out, name), rhs, name)


# ----------------------------------------------------------------------------- inner blocks

def _check(method: str, tasks: TaskSet, gram: Kernels, f0):
    require(method in METHODS, f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    require(isinstance(tasks, TaskSet), f"tasks must be a TaskSet (got {type(tasks).__name__}); build one with "
                                        "ntk_bridge.task_set(train=..., test=...) or TaskSet(train, test)")
    require(isinstance(gram, Kernels), f"gram must be a Kernels (got {type(gram).__name__}); wrap your own "
                                       "matrices with ntk_bridge.gram(ntk=..., nngp=...)")
    n = tasks.points.shape[0]
    for name in ("theta", "k"):
        shape = getattr(gram, name).shape
        require(shape == (n, n), f"gram.{name} has shape {shape} but the task set has {n} points; "
                                 "compute the kernels on tasks.points")
    c = tasks.train[0].y_query.shape[1]
    if f0 is None:
        return np.zeros((n, c))
    f0 = np.asarray(f0, np.float64)
    f0 = f0[:, None] if f0.ndim == 1 else f0
    require(f0.shape == (n, c), f"f0 must have shape ({n}, {c}) (one initial output per point); got {f0.shape}")
    return f0


def inner_blocks(kin: np.ndarray, q: np.ndarray, s: np.ndarray, inner: InnerLoop) -> np.ndarray:
    """P_i = K_in(X_i, X'_i) T_i for every task i, (N, n_q, n_s); ``q`` (N, n_q), ``s`` (N, n_s).

    All N support kernels K_in(X'_i, X'_i) are decomposed in one batched ``eigh``.
    """
    t = inner.operator(kin[s[:, :, None], s[:, None, :]])
    return kin[q[:, :, None], s[:, None, :]] @ t


def project_rows(m: np.ndarray, q: np.ndarray, s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Rows of A_i M for every task: ``M[q_i] - P_i M[s_i]``, (N, n_q, k) for ``m`` (n, k)."""
    return m[q] - p @ m[s]


def _dual_to_points(w: np.ndarray, q: np.ndarray, s: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """A^T w as a vector over all n points: +w_i on q_i, -P_i^T w_i on s_i; ``w`` (N, n_q, c)."""
    h = np.zeros((n, w.shape[-1]))
    np.add.at(h, q.reshape(-1), w.reshape(-1, w.shape[-1]))
    np.add.at(h, s.reshape(-1), -(np.swapaxes(p, -1, -2) @ w).reshape(-1, w.shape[-1]))
    return h


def _kin(method: str, gram: Kernels) -> np.ndarray:
    return gram.theta if method == "maml" else gram.k


def _kappa_out(tasks: TaskSet, gram: Kernels) -> float:
    z = tasks.train_z.reshape(-1)
    return float(np.mean(np.diagonal(gram.theta)[z]))


# ----------------------------------------------------------------------------- public pieces

def meta_ntk(method: str, tasks: TaskSet, gram: Kernels, inner: InnerLoop) -> tuple[np.ndarray, np.ndarray]:
    """Meta-NTK ``Phi = A Theta(Z, Z) A^T`` (N n_q, N n_q) and the block-diagonal ``A`` (docs/theory.md 4).

    ``A_i = [I, -K_in(X_i, X'_i) T_i]`` with K_in = Theta for ``maml`` and K for ``anil``; ``A`` is
    returned dense, for tests and inspection (:func:`predict` never builds it).
    """
    from scipy.linalg import block_diag

    require(method in GBML_METHODS, f"the Meta-NTK is defined for {', '.join(GBML_METHODS)}; got {method!r}")
    q, s = tasks.train_q, tasks.train_s
    p = inner_blocks(_kin(method, gram), q, s, inner)
    phi = _phi(gram.theta, q, s, p)
    a = block_diag(*[np.concatenate([np.eye(q.shape[1]), -pi], axis=1) for pi in p])
    return phi, a


def _phi(theta: np.ndarray, q: np.ndarray, s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Phi = A Theta A^T from two row projections (Theta symmetric), (N n_q, N n_q)."""
    rows = project_rows(theta, q, s, p).reshape(-1, theta.shape[0])        # A Theta(Z, all)
    phi = project_rows(rows.T, q, s, p).reshape(-1, rows.shape[0]).T        # (A Theta A^T)
    return 0.5 * (phi + phi.T)


def adaptation_only(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig) -> np.ndarray:
    """The t = 0 predictor K_in(X, X') T' Y' (Theta for MAML, K otherwise), (n_test, n_q, c)."""
    p = inner_blocks(_kin(method, gram), tasks.test_q, tasks.test_s, config.inner)
    return p @ tasks.test_y_support()


# ----------------------------------------------------------------------------- predictors

def _head_only(tasks, gram, config, f0):
    """f0(X) + K T' (Y' - f0(X'))."""
    q, s = tasks.test_q, tasks.test_s
    p = inner_blocks(gram.k, q, s, config.inner)
    return f0[q] + p @ (tasks.test_y_support() - f0[s])


def _ntk(tasks, gram, config, f0):
    """f0(X) + Theta(X, X_q) O(Theta(X_q, X_q)) (Y_q - f0(X_q)) over the training queries X_q."""
    qi = tasks.train_q.reshape(-1)
    c = f0.shape[1]
    w = outer_solve(gram.theta[np.ix_(qi, qi)], tasks.train_y_query().reshape(-1, c) - f0[qi], config,
                    "NTK Gram matrix Theta(X_train, X_train)", _kappa_out(tasks, gram))
    return f0[tasks.test_q] + gram.theta[:, qi][tasks.test_q] @ w


def _gbml(method, tasks, gram, config, f0):
    """K_in T' Y' + A_test f0 + A_test Theta(Z_test, Z) A^T O(Phi) (Y_q - A f0(Z) - G) (docs/theory.md 4)."""
    kin, theta, n = _kin(method, gram), gram.theta, gram.theta.shape[0]
    q, s = tasks.train_q, tasks.train_s
    p = inner_blocks(kin, q, s, config.inner)
    g = p @ tasks.train_y_support()                                   # (N, n_q, c)
    resid = tasks.train_y_query() - project_rows(f0, q, s, p) - g
    c = resid.shape[-1]
    w = outer_solve(_phi(theta, q, s, p), resid.reshape(-1, c), config, f"Meta-NTK Phi ({method})",
                    _kappa_out(tasks, gram)).reshape(resid.shape)
    values = theta @ _dual_to_points(w, q, s, p, n) + f0              # Theta(., Z) A^T w + f0, every point
    tq, ts = tasks.test_q, tasks.test_s
    pt = inner_blocks(kin, tq, ts, config.inner)
    return pt @ tasks.test_y_support() + project_rows(values, tq, ts, pt)


def _mtl_b(tasks, gram, config, f0):
    """K T' (Y' - f0(X')) + f0(X) + [Theta_b(X, Z) - K T' Theta_b(X', Z)] O(Theta_MTL) (U - f0(Z)) (docs/theory.md 5)."""
    theta_b = gram.theta - gram.k
    z = tasks.train_z.reshape(-1)
    task_id = np.repeat(np.arange(len(tasks.train)), tasks.train_z.shape[1])
    same = task_id[:, None] == task_id[None, :]
    theta_mtl = theta_b[np.ix_(z, z)] + same * gram.k[np.ix_(z, z)]
    u = np.concatenate([np.concatenate([t.y_query, t.y_support]) for t in tasks.train])
    w = outer_solve(theta_mtl, u - f0[z], config, "MTL kernel Theta_MTL", _kappa_out(tasks, gram))
    values = theta_b[:, z] @ w + f0                                   # Theta_b(., Z) w + f0, every point
    tq, ts = tasks.test_q, tasks.test_s
    pt = inner_blocks(gram.k, tq, ts, config.inner)
    return pt @ tasks.test_y_support() + project_rows(values, tq, ts, pt)


def predict(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig = PredictorConfig(),
            f0: np.ndarray | None = None) -> np.ndarray:
    """Test-query predictions (n_test_tasks, n_q, c) of ``method`` (see module docstring)."""
    f0 = _check(method, tasks, gram, f0)
    if method in ("head-only", "mtl-a"):      # the same formula: f0(X) + K T' (Y' - f0(X'))
        return _head_only(tasks, gram, config, f0)
    if method == "ntk":
        return _ntk(tasks, gram, config, f0)
    if method in GBML_METHODS:
        return _gbml(method, tasks, gram, config, f0)
    return _mtl_b(tasks, gram, config, f0)
