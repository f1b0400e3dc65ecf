"""The exact muP infinite-width limit of one-hidden-layer LINEAR networks (docs/theory.md section 11).

The network is the engine's dense-layer form with the identity activation,
``f(x) = (sigma_r / sqrt n) ((sigma / sqrt d) x W_1) w_r`` (no biases), in the muP rows of
:mod:`ntk_bridge.engine.parameterization` (base width ``n0``): ``W_1 ~ N(0, 1)`` with step factor
``n / n0``, ``w_r ~ N(0, n0 / n)`` with step factor 1. It is trained by the methods of
:mod:`ntk_bridge.finite.training` (head-only, MTL-A, MTL-B, ANIL second order, MAML first or second
order) under their protocol: inner loop ``k`` steps of ``alpha`` on the support, outer loop
``S`` plain SGD steps of ``lr``, test-time adaptation on the test supports.

Per neuron ``j`` (theory.md 11.1) the state ``z_j = (a_j, v_j^(1..H))`` in R^(d+H), with
``a_j = (sigma / sqrt d) W_1[:, j]`` and ``v_j^(h) = n (sigma_r / sqrt n) w_h[j]`` (H heads: 1 for
head-only / ANIL / MAML, N training heads + the test head for MTL), is O(1), and with the second
moment ``C = (1/n) sum_j z_j z_j^T`` ((d+H, d+H), blocks ``P = C[:d, :d]``, ``q_h = C[:d, d+h]``)
the network's output of head h is exactly ``f_h(x) = x . q_h``. Every gradient step of every
method maps every neuron by one matrix that depends on C only (theory.md 11.2):

    z_j <- A z_j,   A = I - eta D (G + G^T),   D = diag(sigma^2/(d n0) I_d, sigma_r^2 I_H),
    so  C <- A C A^T,

with ``G = dl/dC`` of the step's loss written as a function of C (the width cancels: the muP
property). Head-only steps use ``D = diag(0, sigma_r^2 I_H)``; first-order MAML uses
``A = I - eta D sum_i S_i M_i`` (theory.md 11.3). Hence:

- started from the network's own empirical moment ``C^_0`` the recursion gives the finite
  network's trained predictions EXACTLY, at every width (:func:`empirical_moment`; the test
  compares it with :func:`ntk_bridge.finite.training.train_and_predict` to 1e-10);
- started from ``Sigma_0 = E[z z^T] = diag(sigma^2/d I_d, sigma_r^2 n0 J_H)`` (MTL-B and the
  single-head methods: every head a copy of w_0) or ``... I_H`` (MTL-A: independent heads) it is
  the limit ``F_inf`` (:func:`initial_moment`);
- the finite-width error is ``F_n - F_inf ~ N(0, Sigma_F / n)``, ``Sigma_F[k, l] = 2 tr(H_k
  Sigma_0 H_l Sigma_0)``, ``H_k = dF_k/dC`` at Sigma_0 (theory.md 11.4; :func:`fluctuation`,
  :func:`tolerance`).

Arrays are float64 (the public functions run inside :func:`ntk_bridge.engine.precision.float64`);
JAX is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from ntk_bridge.closed_form.tasks import TaskSet
from ntk_bridge.engine.parameterization import Parameterization, layer_scales, lr_factors
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.errors import require
from ntk_bridge.finite.training import FiniteNet

LIMIT_METHODS = ("head-only", "mtl-a", "mtl-b", "anil", "maml")
MTL = ("mtl-a", "mtl-b")


@dataclass(frozen=True)
class LimitConfig:
    """The linear muP network and its training protocol (the feature-map study's defaults).

    ``W_std`` / ``readout_W_std``: sigma, sigma_r of the dense layers; ``base_width``: n0;
    inner loop ``inner_steps`` x ``inner_step``; outer time ``outer_time`` split into
    ``S = ceil(outer_time lam_max / lr_fraction)`` steps (:func:`schedule`); MAML first order
    when ``first_order_maml``.
    """

    W_std: float = math.sqrt(2.0)
    readout_W_std: float = 1.0
    base_width: int = 64
    inner_step: float = 0.2
    inner_steps: int = 5
    outer_time: float = 20.0
    lr_fraction: float = 0.5
    first_order_maml: bool = True

    def __post_init__(self):
        for name in ("W_std", "readout_W_std", "outer_time"):
            v = getattr(self, name)
            require(np.isfinite(v) and v > 0, f"`{name}` must be finite and > 0 (got {v!r})")
        Parameterization("mup", self.base_width)          # validates the base width
        require(np.isfinite(self.inner_step) and self.inner_step >= 0,
                f"`inner_step` must be finite and >= 0 (got {self.inner_step!r})")
        require(isinstance(self.inner_steps, int) and self.inner_steps >= 0,
                f"`inner_steps` must be an integer >= 0 (got {self.inner_steps!r})")
        require(0 < self.lr_fraction < 2, f"`lr_fraction` must be in (0, 2) (got {self.lr_fraction!r})")
        require(isinstance(self.first_order_maml, bool), f"`first_order_maml` must be a bool (got {self.first_order_maml!r})")

    def body_var(self, d: int) -> float:
        """Var a_j = sigma^2 / d."""
        return self.W_std ** 2 / d

    def head_var(self) -> float:
        """Var v_j = n^2 Var(sigma_r w / sqrt n) = sigma_r^2 n0."""
        return self.readout_W_std ** 2 * self.base_width

    def first_order(self, method: str) -> bool:
        return method == "maml" and self.first_order_maml


class LimitData(NamedTuple):
    """One task draw as float64 arrays (single output): training queries ``xq`` (N, q, d), ``yq``
    (N, q), supports ``xs`` (N, s, d), ``ys`` (N, s), merged ``z = [xq; xs]`` (N, q+s, d), ``u``
    (N, q+s); test queries ``txq`` (M, q, d), test supports ``txs`` (M, s, d), ``tys`` (M, s)."""

    xq: Any
    yq: Any
    xs: Any
    ys: Any
    z: Any
    u: Any
    txq: Any
    txs: Any
    tys: Any


@in_float64
def limit_data(tasks: TaskSet) -> LimitData:
    """The arrays of ``tasks`` in the layout of :func:`ntk_bridge.finite.training.train_and_predict`."""
    import jax.numpy as jnp

    yq, ys = tasks.train_y_query(), tasks.train_y_support()
    require(yq.shape[-1] == 1, f"the linear muP limit is implemented for one output (got {yq.shape[-1]})")
    pts = tasks.points
    f = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    return LimitData(f(pts[tasks.train_q]), f(yq[..., 0]), f(pts[tasks.train_s]), f(ys[..., 0]),
                     f(pts[tasks.train_z]), f(np.concatenate([yq, ys], axis=1)[..., 0]),
                     f(pts[tasks.test_q]), f(pts[tasks.test_s]), f(tasks.test_y_support()[..., 0]))


def linear_kernels(x: np.ndarray, config: LimitConfig) -> Kernels:
    """The linear network's infinite-width NTK-parameterised kernels (theory.md 11.5):
    ``K = sigma_r^2 sigma^2 x.x'/d`` (n_points, n_points) and ``Theta = 2 K`` (input layer and
    readout contribute one K each)."""
    k = config.readout_W_std ** 2 * config.W_std ** 2 * (x @ x.T) / x.shape[1]
    return Kernels(theta=2.0 * k, k=k)


def schedule(method: str, tasks: TaskSet, config: LimitConfig) -> tuple[float, int]:
    """(lr, S) as the feature map's: ``S = ceil(outer_time lam_max / lr_fraction)`` steps of
    ``lr = outer_time / S``, lam_max of the method's objective kernel
    (:func:`ntk_bridge.finite.sweep.objective_kernel`) with :func:`linear_kernels`; head-only (1, 0)."""
    from ntk_bridge.closed_form.inner_loop import InnerLoop
    from ntk_bridge.finite.sweep import objective_kernel

    require(method in LIMIT_METHODS, f"unknown method {method!r}; choose one of {', '.join(LIMIT_METHODS)}")
    if method == "head-only":
        return 1.0, 0
    inner = InnerLoop(form="steps", step_size=float(config.inner_step), steps=int(config.inner_steps))
    kern = linear_kernels(tasks.points, config)
    lam = float(np.linalg.eigvalsh(objective_kernel(method, tasks, kern, inner)).max())
    steps = max(1, int(math.ceil(config.outer_time * lam / config.lr_fraction)))
    return config.outer_time / steps, steps


# ----------------------------------------------------------------------------- the recursion on C

def step_factors(config: LimitConfig, d: int, n_heads: int, head_only: bool):
    """The diagonal of D (d + n_heads,): per-neuron step factors of a_j and v_j in units of the
    global step (theory.md 11.2): ``sigma^2 / (d n0)`` for a_j (0 when ``head_only``) and
    ``sigma_r^2`` for every head coordinate. The width cancels: input step ``n/n0`` times
    ``Var``-scale ``sigma^2/d`` per neuron over ``n`` neurons; readout step ``sigma_r^2/n`` times ``n``."""
    import jax.numpy as jnp

    body = 0.0 if head_only else config.W_std ** 2 / (d * config.base_width)
    return jnp.asarray([body] * d + [config.readout_W_std ** 2] * n_heads)


def _head_step_map(C, X, y, h: int, eta, dvec, d: int):
    """A = I - eta diag(dvec) (G + G^T) of one GD step on (1/2)||X q_h - y||^2, (D, D).

    ``G`` has the one block ``G[:d, d+h] = g = X^T (X q_h - y)`` (theory.md 11.2, one step on one
    head): a_j moves by ``-eta c_a g v_j^(h)`` and v_j^(h) by ``-eta c_v g . a_j``."""
    import jax.numpy as jnp

    n_dim = C.shape[0]
    g = X.T @ (X @ C[:d, d + h] - y)
    S = jnp.zeros((n_dim, n_dim)).at[:d, d + h].set(g).at[d + h, :d].set(g)
    return jnp.eye(n_dim) - eta * dvec[:, None] * S


def adapt(C, X, y, h: int, alpha, k: int, dvec, d: int):
    """``k`` steps of size ``alpha`` on the support (X (s, d), y (s,)) for head ``h``; returns the
    adapted moment ``C' = M C M^T`` and the per-neuron map ``M = A_k ... A_1`` (both (D, D))."""
    import jax
    import jax.numpy as jnp

    def body(carry, _):
        C, M = carry
        A = _head_step_map(C, X, y, h, alpha, dvec, d)
        return (A @ C @ A.T, A @ M), None

    (C, M), _ = jax.lax.scan(body, (C, jnp.eye(C.shape[0])), None, length=k)
    return C, M


def _query_loss(Cp, xq, yq, d: int):
    return 0.5 * ((xq @ Cp[:d, d] - yq) ** 2).sum()


def outer_map(method: str, C, data: LimitData, eta, config: LimitConfig, d: int, first_order: bool):
    """The (D, D) matrix A of one outer step of ``method`` at moment C (theory.md 11.3).

    MTL: ``l(C) = sum_i (1/2)||Z_i q_i - U_i||^2`` (the test head, the last coordinate, gets no
    gradient); ANIL / second-order MAML: ``l(C) = sum_i (1/2)||X_i q'_i(C) - Y_i||^2`` through the
    inner loop (head-only steps for ANIL, full steps for MAML), ``A = I - eta D (G + G^T)``;
    first-order MAML: ``A = I - eta D sum_i (G_i + G_i^T) M_i``, ``G_i`` the query-loss gradient at
    the adapted moment and ``M_i`` the inner loop's per-neuron map.
    """
    import jax
    import jax.numpy as jnp

    n_heads = C.shape[0] - d
    full = step_factors(config, d, n_heads, False)
    eye = jnp.eye(C.shape[0])
    if method in MTL:
        def loss(C):
            pred = jnp.einsum("tpd,dt->tp", data.z, C[:d, d:d + data.z.shape[0]])
            return 0.5 * ((pred - data.u) ** 2).sum()

        G = jax.grad(loss)(C)
        return eye - eta * full[:, None] * (G + G.T)
    inner = step_factors(config, d, n_heads, method == "anil")
    alpha, k = config.inner_step, config.inner_steps
    if not first_order:
        def meta_loss(C):
            def one(xq, yq, xs, ys):
                return _query_loss(adapt(C, xs, ys, 0, alpha, k, inner, d)[0], xq, yq, d)

            return jax.vmap(one)(data.xq, data.yq, data.xs, data.ys).sum()

        G = jax.grad(meta_loss)(C)
        return eye - eta * full[:, None] * (G + G.T)

    def one(xq, yq, xs, ys):
        Cp, M = adapt(C, xs, ys, 0, alpha, k, inner, d)
        Gi = jax.grad(_query_loss)(Cp, xq, yq, d)
        return (Gi + Gi.T) @ M

    SM = jax.vmap(one)(data.xq, data.yq, data.xs, data.ys).sum(axis=0)
    return eye - eta * full[:, None] * SM


def train_moment(method: str, C0, data: LimitData, lr, steps: int, config: LimitConfig, first_order: bool):
    """The moment after ``steps`` outer steps of size ``lr``: ``C <- A(C) C A(C)^T`` from ``C0``."""
    import jax

    d = data.xq.shape[-1]

    def body(C, _):
        A = outer_map(method, C, data, lr, config, d, first_order)
        return A @ C @ A.T, None

    return jax.lax.scan(body, C0, None, length=steps)[0] if steps else C0


def test_predictions(method: str, C, data: LimitData, config: LimitConfig):
    """Test predictions (M, q) after each test task's adaptation: ``x . q'`` with ``q'`` the adapted
    head column. MTL: the (a, test head) block of C (body frozen, the test head -- the last
    coordinate -- fine-tuned); ANIL, head-only: head-only steps; MAML: full steps."""
    import jax
    import jax.numpy as jnp

    d = data.xq.shape[-1]
    if method in MTL:
        idx = jnp.concatenate([jnp.arange(d), jnp.asarray([C.shape[0] - 1])])
        C = C[jnp.ix_(idx, idx)]
    dvec = step_factors(config, d, 1, method != "maml")

    def one(xq, xs, ys):
        return xq @ adapt(C, xs, ys, 0, config.inner_step, config.inner_steps, dvec, d)[0][:d, d]

    return jax.vmap(one)(data.txq, data.txs, data.tys)


@lru_cache(maxsize=64)
def _compiled(method: str, steps: int, config: LimitConfig, first_order: bool):
    import jax

    @jax.jit
    def run(C0, data, lr):
        C = train_moment(method, C0, data, lr, steps, config, first_order)
        return test_predictions(method, C, data, config), test_predictions(method, C0, data, config)

    return run


@in_float64
def predict(method: str, C0, data: LimitData, lr: float, steps: int, config: LimitConfig,
            first_order: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test predictions (M, q) of ``method`` trained from moment ``C0`` by ``steps`` outer steps of
    ``lr``, and the untrained network's adaptation ``F(t = 0)`` (the d_tr denominator's reference).
    ``first_order`` defaults to ``config.first_order(method)``."""
    import jax.numpy as jnp

    require(method in LIMIT_METHODS, f"unknown method {method!r}; choose one of {', '.join(LIMIT_METHODS)}")
    fo = config.first_order(method) if first_order is None else bool(first_order)
    run = _compiled(method, int(steps) if method != "head-only" else 0, config, fo)
    f, f0 = run(jnp.asarray(C0, jnp.float64), data, jnp.asarray(lr, jnp.float64))
    return np.asarray(f), np.asarray(f0)


def n_heads(method: str, n_train: int) -> int:
    """H: the N training heads and the test head for MTL, else 1."""
    return n_train + 1 if method in MTL else 1


def initial_moment(method: str, d: int, n_train: int, config: LimitConfig) -> np.ndarray:
    """Sigma_0 = E[z z^T] (d+H, d+H) at init (theory.md 11.1): ``sigma^2/d I_d`` on the body,
    ``sigma_r^2 n0 J_H`` on the heads (MTL-B: every head a copy of w_0; H = 1 for head-only,
    ANIL, MAML) or ``sigma_r^2 n0 I_H`` (MTL-A: independent training heads, test head w_0); 0 between."""
    h = n_heads(method, n_train)
    heads = np.eye(h) if method == "mtl-a" else np.ones((h, h))
    out = np.zeros((d + h, d + h))
    out[:d, :d] = config.body_var(d) * np.eye(d)
    out[d:, d:] = config.head_var() * heads
    return out


# ----------------------------------------------------------------------------- finite networks

@lru_cache(maxsize=8)
def _linear_layers(W_std: float, readout_W_std: float, width: int, d: int, base_width: int):
    """(layer stack, apply) of :func:`linear_net`; one apply per (stds, width, d, n0), so that the
    trainer's jitted loops (cached per apply function) are reused across seeds."""
    from ntk_bridge.engine.networks import Layer, dense, serial

    param = Parameterization("mup", base_width)
    scales = layer_scales(param, 1, width, d, W_std, readout_W_std)
    identity = Layer(lambda key, in_dim: (in_dim, ()), lambda params, x: x)
    net = serial(dense(width, W_std, 0.0, scales[0].init_std), identity,
                 dense(1, readout_W_std, 0.0, scales[1].init_std))

    def apply_fn(params, x, **kwargs):
        return net.apply(params, x)

    return net, apply_fn


@in_float64
def linear_net(width: int, seed: int, d: int, n_train: int, config: LimitConfig) -> FiniteNet:
    """A one-hidden-layer linear muP network in the engine's layer form and the trainer's layout
    ``[(W_1, None), (), (w_r, None)]``: :func:`ntk_bridge.engine.networks.dense` layers with the
    muP init stds of :func:`~ntk_bridge.engine.parameterization.layer_scales` around an identity
    activation, keys as :func:`ntk_bridge.finite.training.init_net` (``fold_in(seed, 0)`` for the
    network, ``1 + i`` for MTL-A's ``n_train`` heads), the muP step factors ``(n/n0, 1, 1)``.
    (``spec`` records the weight stds; its activation field is not used: the network is linear.)"""
    import jax

    require(isinstance(width, (int, np.integer)) and width >= 1, f"`width` must be an integer >= 1 (got {width!r})")
    param = Parameterization("mup", config.base_width)
    net, apply_fn = _linear_layers(config.W_std, config.readout_W_std, int(width), int(d), config.base_width)
    key = jax.random.PRNGKey(int(seed))
    params0 = net.init(jax.random.fold_in(key, 0), d)[1]
    heads = [net.init(jax.random.fold_in(key, 1 + i), d)[1][-1] for i in range(n_train)]
    heads_a = jax.tree_util.tree_map(lambda *h: jax.numpy.stack(h), *heads)
    factors = lr_factors(param, 1, int(width), d, config.W_std, config.readout_W_std)
    spec = NetSpec(depth=1, W_std=config.W_std, readout_W_std=config.readout_W_std)
    return FiniteNet(spec, int(width), int(seed), apply_fn, params0, heads_a, param, factors)


def neuron_states(method: str, net: FiniteNet, n_train: int, config: LimitConfig) -> np.ndarray:
    """z_j for every neuron, (n, d+H): ``a_j = (sigma/sqrt d) W_1[:, j]``, ``v_j = sqrt(n) sigma_r
    w[j]`` for each head the method trains (MTL-B: w_0 repeated N+1 times; MTL-A: the N
    independent heads then w_0; otherwise w_0)."""
    w1 = np.asarray(net.params0[0][0], np.float64)
    d, n = w1.shape
    scale = math.sqrt(n) * config.readout_W_std

    def v(w):
        return scale * np.asarray(w, np.float64).reshape(n)

    a = (config.W_std / math.sqrt(d)) * w1.T
    v0 = v(net.params0[-1][0])[:, None]
    if method == "mtl-b":
        heads = np.repeat(v0, n_train + 1, axis=1)
    elif method == "mtl-a":
        ha = np.asarray(net.heads_a[0], np.float64)[:n_train]
        heads = np.concatenate([np.stack([v(h) for h in ha], axis=1), v0], axis=1)
    else:
        heads = v0
    return np.concatenate([a, heads], axis=1)


def empirical_moment(method: str, net: FiniteNet, n_train: int, config: LimitConfig) -> np.ndarray:
    """C^_0 = (1/n) sum_j z_j z_j^T (d+H, d+H) of the network's own initial parameters."""
    z = neuron_states(method, net, n_train, config)
    return z.T @ z / z.shape[0]


# ----------------------------------------------------------------------------- finite-width error

@lru_cache(maxsize=32)
def _jacobian(method: str, steps: int, config: LimitConfig, first_order: bool):
    """Jitted ``(C0, data, lr) -> dF/dC`` at ``C0``, (M q, D, D)."""
    import jax

    def f(C, data, lr):
        C = train_moment(method, C, data, lr, steps, config, first_order)
        return test_predictions(method, C, data, config).reshape(-1)

    return jax.jit(jax.jacrev(f))


@in_float64
def fluctuation(method: str, data: LimitData, lr: float, steps: int, config: LimitConfig) -> tuple[float, float]:
    """(c^2, lambda_max) of the first-order finite-width error (theory.md 11.4):
    ``Sigma_F[k, l] = 2 tr(H_k Sigma_0 H_l Sigma_0)``, ``H_k`` the symmetrised Jacobian dF_k/dC
    at Sigma_0 (one reverse-mode pass through the recursion), ``c^2 = tr Sigma_F`` (so that
    ``E||F_n - F_inf||^2 = c^2 / n + O(n^-2)``) and ``lambda_max = lambda_max(Sigma_F)``."""
    import jax.numpy as jnp

    d, n_train = int(data.xq.shape[-1]), int(data.xq.shape[0])
    s0 = jnp.asarray(initial_moment(method, d, n_train, config))
    steps = int(steps) if method != "head-only" else 0
    J = _jacobian(method, steps, config, config.first_order(method))(s0, data, jnp.asarray(lr, jnp.float64))
    hs = 0.5 * (J + jnp.swapaxes(J, 1, 2)) @ s0            # H_k Sigma_0, (M q, D, D)
    sig = np.asarray(2.0 * jnp.einsum("kab,lba->kl", hs, hs))
    return float(np.trace(sig)), float(np.linalg.eigvalsh(sig).max())


def tolerance(c2: float, lam_max: float, width: int, delta: float) -> float:
    """The bound on ||F_n - F_inf|| exceeded with probability <= delta for large n (theory.md 11.4):
    ``(c + sqrt(2 lambda_max ln(1/delta))) / sqrt(n)`` (Gaussian concentration of the norm of
    N(0, Sigma_F / n), which is sqrt(lambda_max / n)-Lipschitz, around its mean <= c / sqrt(n))."""
    require(0 < delta < 1, f"`delta` must be in (0, 1) (got {delta!r})")
    return (math.sqrt(c2) + math.sqrt(2.0 * lam_max * math.log(1.0 / delta))) / math.sqrt(width)
