"""Finite-width networks trained by full-batch gradient descent (MTL, ANIL, MAML, NTK regression).

The network is the kernel core's :func:`ntk_bridge.engine.empirical.network` at a finite width (NTK
parameterisation by default; ``init_net(..., param=)`` selects standard or muP, whose per-layer
SGD step factors (:mod:`ntk_bridge.engine.parameterization`) every gradient step below applies, inner
loops included; float64: the public functions run inside :func:`ntk_bridge.engine.precision.float64`): ``params[-1]``
is the head (readout), ``params[:-1]`` the body. Every loss is the squared loss with a 1/2,
``(1/2) sum ||f - Y||^2`` (summed, not averaged), so that a gradient step of size ``a`` is
function-space time ``a`` of docs/theory.md's flows:

- inner loop / test-time fine-tuning: ``k`` steps of size ``a`` on the support,
  ``theta <- theta - a grad (1/2)||f(X') - Y'||^2`` (head only for ANIL and the MTL test head, all
  parameters for MAML); in the kernel regime this is exactly ``InnerLoop('steps', a, k)``;
- outer loop: ``S`` steps of size ``lr`` (plain SGD) on the summed task losses. In the kernel
  regime this is exactly the closed form with ``O(M) = M^{-1} (I - (I - lr M)^S)``
  (:mod:`ntk_bridge.finite.closed`), which tends to gradient flow for time ``eta t = lr S``.

Methods (docs/theory.md sections 4-5):

- ``mtl-b``: shared body, one head per training task, every head (and the test head) starting
  from the network's own initial head ``w_0``; trained on each task's merged data
  ``Z_i = [X_i; X'_i]``; the test head ``w_0`` is then fine-tuned on the test support, body frozen.
- ``mtl-a``: as ``mtl-b`` but the training heads are independent random heads; the test head is
  the network's initial head (independent of the training heads).
- ``anil`` / ``maml``: outer gradients through the inner loop (second order, plain ``jax.grad``
  through ``lax.fori_loop``), inner loop on the support, outer loss on the query.
  With ``GDConfig(first_order=True)`` the outer gradient is the query loss's gradient at the
  adapted parameters, the inner loop held constant (first-order MAML / ANIL, Finn et al. 2017).
- ``ntk``: the whole network trained on all training queries, no adaptation.
- ``head-only``: the initial network's head fine-tuned on the test support (no training tasks).

Non-zero initial output: the networks are NOT centred. The initial function
``f_0 = apply(params0, .)`` is kept and the closed forms carry it exactly through docs/theory.md's
f_0 terms (see :mod:`ntk_bridge.finite.closed`). Exactness of both sides is tested on the
linearised network (:func:`ntk_bridge.engine.empirical.linearize`), where training and closed forms with the
empirical kernels agree to rounding.

Divergence: losses are recorded at every outer step; a non-finite loss or one above
``explode`` times the initial loss raises :class:`~ntk_bridge.errors.BridgeError` naming the step
and a learning rate to stay below (estimated from the loss growth), never NaN predictions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.tasks import TaskSet
from ntk_bridge.engine.empirical import network
from ntk_bridge.engine.parameterization import NTK, Parameterization, lr_factors
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import BridgeError, require

FINITE_METHODS = ("mtl-a", "mtl-b", "anil", "maml", "ntk", "head-only")
Params = Any  # the stax-layout parameter list (ntk_bridge.engine.networks): [(W, b), (), ..., (W_head, b_head)]


@dataclass(frozen=True)
class GDConfig:
    """Gradient descent on a finite network: the inner loop (``inner_steps`` steps of size
    ``inner_step``) and the outer loop. (Not the few-shot trainer's run config, which is
    :class:`ntk_bridge.train.config.TrainConfig`.)

    The outer loop runs ``outer_steps`` steps of size ``outer_lr`` (function-space time
    ``outer_lr * outer_steps``), checked for divergence every ``chunk`` steps. ``dtype`` is the
    precision of training and test-time adaptation ("float64", the default and what the exactness
    tests use, or "float32", about twice as fast on CPU; the closed forms stay float64).
    ``first_order``: ANIL / MAML outer gradients without the inner loop's second-order terms.
    """

    inner_step: float = 0.2
    inner_steps: int = 5
    outer_lr: float = 0.02
    outer_steps: int = 500
    chunk: int = 100
    explode: float = 1e3
    dtype: str = "float64"
    first_order: bool = False

    def __post_init__(self):
        require(isinstance(self.first_order, bool), f"first_order must be a bool (got {self.first_order!r})")
        require(self.dtype in ("float64", "float32"), f"dtype must be float64 or float32 (got {self.dtype!r})")
        require(np.isfinite(self.inner_step) and self.inner_step >= 0,
                f"inner step size must be finite and >= 0 (got {self.inner_step!r})")
        require(isinstance(self.inner_steps, (int, np.integer)) and self.inner_steps >= 0,
                f"inner steps must be an integer >= 0 (got {self.inner_steps!r})")
        require(np.isfinite(self.outer_lr) and self.outer_lr > 0,
                f"outer learning rate must be finite and > 0 (got {self.outer_lr!r})")
        require(isinstance(self.outer_steps, (int, np.integer)) and self.outer_steps >= 0,
                f"outer steps must be an integer >= 0 (got {self.outer_steps!r})")
        require(isinstance(self.chunk, (int, np.integer)) and self.chunk >= 1,
                f"chunk must be an integer >= 1 (got {self.chunk!r})")
        require(self.explode > 1, f"explode must be > 1 (got {self.explode!r})")

    @property
    def inner(self) -> InnerLoop:
        """The matching closed-form inner loop (exact for k discrete steps in the kernel regime)."""
        return InnerLoop(form="steps", step_size=float(self.inner_step), steps=int(self.inner_steps))

    @property
    def outer_time(self) -> float:
        """eta t = lr * S (gradient-flow time the S steps approximate)."""
        return float(self.outer_lr) * int(self.outer_steps)

    def as_dict(self) -> dict:
        return {**asdict(self), "outer_time": self.outer_time}


@dataclass(frozen=True)
class FiniteNet:
    """A finite network, its initial parameters and the independent heads of MTL variant A.

    ``heads_a`` stacks ``n_heads`` independent initial heads (leading axis n_heads).
    ``param`` is the parameterisation; ``lr_factors`` its SGD step factor per entry of the
    parameter list (None for NTK: every factor 1, the plain update).
    """

    spec: NetSpec
    width: int
    seed: int
    apply_fn: Callable
    params0: Params
    heads_a: Params
    param: Parameterization = NTK
    lr_factors: tuple | None = None


@lru_cache(maxsize=16)
def _network(spec: NetSpec, width: int, param: Parameterization = NTK, d: int | None = None):
    """One (init_fn, apply_fn) per (spec, width, param), so jitted trainers are reused across seeds."""
    if param == NTK:
        return network(spec, int(width))
    from ntk_bridge.engine.networks import fc_network

    return fc_network(spec, int(width), 1, param, d)


@in_float64
def init_net(spec: NetSpec, width: int, seed: int, d: int, n_heads: int,
             param: Parameterization = NTK) -> FiniteNet:
    """Initialise a network of ``width`` from ``PRNGKey(seed)``; heads of variant A from folds 1..
    (the same keys in every parameterisation: only the scales of the table differ)."""
    import jax

    require(isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width >= 1,
            f"width must be an integer >= 1 (got {width!r})")
    require(isinstance(d, (int, np.integer)) and d >= 1, f"input dimension d must be >= 1 (got {d!r})")
    init_fn, apply_fn = _network(spec, int(width), param, None if param == NTK else int(d))
    key = jax.random.PRNGKey(int(seed))
    _, params0 = init_fn(jax.random.fold_in(key, 0), (1, d))
    heads = [init_fn(jax.random.fold_in(key, 1 + i), (1, d))[1][-1] for i in range(n_heads)]
    heads_a = jax.tree_util.tree_map(lambda *h: jax.numpy.stack(h), *heads)
    factors = None if param == NTK else lr_factors(param, spec.depth, int(width), int(d), spec.W_std,
                                                  spec.readout_W_std)
    return FiniteNet(spec, int(width), int(seed), apply_fn, params0, heads_a, param, factors)


# ----------------------------------------------------------------------------- losses

def _with_head(body, head) -> list:
    return list(body) + [head]


def _sq(f, y):
    import jax.numpy as jnp

    return 0.5 * jnp.sum((f - y) ** 2)


def sgd_step(params: Params, grads: Params, lr, factors: tuple | None) -> Params:
    """``p <- p - lr g`` (``factors`` None), or per entry of the parameter list
    ``p_l <- p_l - (lr factors[l]) g_l`` (the parameterisation's per-layer step sizes)."""
    import jax

    tm = jax.tree_util.tree_map
    if factors is None:
        return tm(lambda w, g: w - lr * g, params, grads)
    return [tm(lambda w, g, r=r: w - (lr * r) * g, p, g) for p, g, r in zip(params, grads, factors)]


def adapt(apply_fn: Callable, params: Params, xs, ys, step: float, steps: int, head_only: bool,
          factors: tuple | None = None) -> Params:
    """``steps`` gradient steps of size ``step`` on (1/2)||f(xs) - ys||^2; head only or all params
    (with the per-layer step ``factors`` of the parameterisation, None for all ones)."""
    import jax

    tm = jax.tree_util.tree_map
    if head_only:
        body = params[:-1]
        head_step = step if factors is None else step * factors[-1]

        def loss(h):
            return _sq(apply_fn(_with_head(body, h), xs), ys)

        def body_fn(_, h):
            return tm(lambda w, g: w - head_step * g, h, jax.grad(loss)(h))

        return _with_head(body, jax.lax.fori_loop(0, steps, body_fn, params[-1]))

    def loss_all(p):
        return _sq(apply_fn(p, xs), ys)

    def body_all(_, p):
        return sgd_step(p, jax.grad(loss_all)(p), step, factors)

    return jax.lax.fori_loop(0, steps, body_all, list(params))


def _mtl_loss(apply_fn):
    import jax

    def loss(params, data):
        body, heads = params
        z, u = data
        f = jax.vmap(lambda h, x: apply_fn(_with_head(body, h), x))(heads, z)
        return _sq(f, u)

    return loss


def _gbml_loss(apply_fn, step, steps, head_only, factors=None, first_order=False):
    import jax

    def loss(params, data):
        xq, yq, xs, ys = data

        def one(xq, yq, xs, ys):
            p = adapt(apply_fn, params, xs, ys, step, steps, head_only, factors)
            if first_order:   # value of the adapted parameters, gradient of the identity
                p = jax.tree_util.tree_map(lambda a, q: q + jax.lax.stop_gradient(a - q), p, list(params))
            return _sq(apply_fn(p, xq), yq)

        return jax.numpy.sum(jax.vmap(one)(xq, yq, xs, ys))

    return loss


def _ntk_loss(apply_fn):
    def loss(params, data):
        x, y = data
        return _sq(apply_fn(params, x), y)

    return loss


def _loss_of(apply_fn, kind: str, step: float, steps: int, factors=None, first_order=False):
    """The outer loss of a method kind: "mtl" (both variants), "anil", "maml" or "ntk"."""
    if kind == "mtl":
        return _mtl_loss(apply_fn)
    if kind in ("anil", "maml"):
        return _gbml_loss(apply_fn, step, steps, kind == "anil", factors, first_order)
    return _ntk_loss(apply_fn)


def _kind(method: str) -> str:
    return "mtl" if method in ("mtl-a", "mtl-b") else method


@lru_cache(maxsize=128)
def _trainer(apply_fn, kind: str, step: float, steps: int, chunk: int, factors: tuple | None = None,
             first_order: bool = False):
    """Jitted ``run(params, data, lr, n)``: n <= chunk SGD steps ``p <- p - lr grad``.

    ``lr`` and ``n`` are traced, so one compilation per (network, kind, inner loop) serves every
    seed, learning rate and the last, shorter chunk. Returns (params, losses (chunk,)): the loss
    before each step, NaN after the n-th.
    """
    import jax
    import jax.numpy as jnp

    loss = _loss_of(apply_fn, kind, step, steps, factors, first_order)
    grad = jax.value_and_grad(loss)

    def update(p, g, lr):
        if factors is None:
            return jax.tree_util.tree_map(lambda w, d: w - lr * d, p, g)
        if kind == "mtl":   # (body, heads): the heads take the readout's factor
            (body, heads), (g_body, g_heads) = p, g
            r = factors[-1]
            return (sgd_step(body, g_body, lr, factors[:-1]),
                    jax.tree_util.tree_map(lambda w, d: w - (lr * r) * d, heads, g_heads))
        return sgd_step(p, g, lr, factors)

    @jax.jit
    def run(params, data, lr, n):
        def body(i, carry):
            p, buf = carry
            value, g = grad(p, data)
            p = update(p, g, lr)
            return p, buf.at[i].set(value.astype(buf.dtype))

        buf = jnp.full((chunk,), jnp.nan, dtype=jnp.float64)
        return jax.lax.fori_loop(0, n, body, (params, buf))

    return run


def _stable_lr(losses: np.ndarray, lr: float) -> float:
    """A learning rate below which the run should not diverge, from its loss growth.

    Near the kernel regime the diverging mode grows per step by r = (lr lam - 1)^2 in loss, so
    lam = (1 + sqrt(r)) / lr and the stability limit 2 / lam = 2 lr / (1 + sqrt(r)).
    """
    ok = losses[np.isfinite(losses) & (losses > 0)]
    if ok.size >= 3:
        ratios = ok[1:] / ok[:-1]
        r = float(np.median(ratios[-5:]))
        if r > 1:
            return 2.0 * lr / (1.0 + math.sqrt(r))
    return lr / 2.0


def gradient_descent(apply_fn, method: str, params, data, config: GDConfig, what: str,
                     factors: tuple | None = None):
    """Run the outer loop of ``method`` from ``params``; returns (params, losses (S,)).

    ``factors``: the parameterisation's per-layer step factors (None: all ones).

    Plain SGD ``p <- p - lr grad`` (what optax.sgd does without momentum), in chunks of
    ``config.chunk`` steps inside one jitted ``fori_loop``; the losses are checked after each
    chunk. Raises BridgeError on a non-finite or exploding loss (see the module docstring).
    """
    import jax.numpy as jnp

    losses: list[np.ndarray] = []
    done, total = 0, int(config.outer_steps)
    loss0 = None
    chunk = min(int(config.chunk), max(total, 1))
    run = _trainer(apply_fn, _kind(method), float(config.inner_step), int(config.inner_steps), chunk,
                   factors, bool(config.first_order))
    lr = jnp.asarray(config.outer_lr, _dtype(config))
    while done < total:
        n = min(chunk, total - done)
        params, chunk_losses = run(params, data, lr, n)
        chunk_losses = np.asarray(chunk_losses, np.float64)[:n]
        if loss0 is None:
            loss0 = float(chunk_losses[0])
            if not np.isfinite(loss0):
                raise BridgeError(
                    f"{what}: the loss is not finite before training (step 0, loss {loss0}); "
                    f"the inner step size {config.inner_step:g} may diverge on the support, lower it")
        bad = ~np.isfinite(chunk_losses) | (chunk_losses > config.explode * max(loss0, 1e-300))
        if bad.any():
            i = int(np.argmax(bad))
            seen = np.concatenate(losses + [chunk_losses[: i + 1]])
            bound = _stable_lr(seen, float(config.outer_lr))
            raise BridgeError(
                f"{what}: training diverged at step {done + i} (loss {chunk_losses[i]:.3g}, initial {loss0:.3g}); "
                f"lower the learning rate below {bound:.3g} (it is {config.outer_lr:g})")
        losses.append(chunk_losses)
        done += n
    return params, (np.concatenate(losses) if losses else np.zeros(0))


def _dtype(config: GDConfig):
    import jax.numpy as jnp

    return jnp.float32 if config.dtype == "float32" else jnp.float64


# ----------------------------------------------------------------------------- task arrays

def _task_arrays(tasks: TaskSet):
    """Training (Z, U, Xq, Yq, Xs, Ys) and test (Xq, Xs, Ys) as float64 jax arrays."""
    import jax.numpy as jnp

    pts = tasks.points
    yq, ys = tasks.train_y_query(), tasks.train_y_support()
    arr = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    train = dict(z=arr(pts[tasks.train_z]), u=arr(np.concatenate([yq, ys], axis=1)),
                 xq=arr(pts[tasks.train_q]), yq=arr(yq), xs=arr(pts[tasks.train_s]), ys=arr(ys))
    test = dict(xq=arr(pts[tasks.test_q]), xs=arr(pts[tasks.test_s]), ys=arr(tasks.test_y_support()))
    return train, test


@lru_cache(maxsize=128)
def _predictor(apply_fn, step: float, steps: int, head_only: bool, factors: tuple | None = None):
    """Jitted: adapt params on each task's support (vmapped over tasks), predict its queries."""
    import jax

    @jax.jit
    def run(params, xq, xs, ys):
        def one(xq, xs, ys):
            return apply_fn(adapt(apply_fn, params, xs, ys, step, steps, head_only, factors), xq)

        return jax.vmap(one)(xq, xs, ys)

    return run


def _adapt_predict(apply_fn, params, test, config: GDConfig, head_only: bool,
                   factors: tuple | None = None) -> np.ndarray:
    """Adapt ``params`` on every test support, predict its queries: (n_test, n_q, c)."""
    run = _predictor(apply_fn, float(config.inner_step), int(config.inner_steps), bool(head_only), factors)
    return np.asarray(run(params, test["xq"], test["xs"], test["ys"]), np.float64)


@dataclass
class FiniteResult:
    """Test predictions (n_test, n_q, c) and the outer-loop losses (S,) of one trained network."""

    predictions: np.ndarray
    losses: np.ndarray
    params: Params = None

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1]) if self.losses.size else float("nan")


def _cast(tree, config: GDConfig):
    """Every array leaf of ``tree`` in the training dtype (a no-op for float64)."""
    import jax

    dtype = _dtype(config)
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), tree)


@in_float64
def train_and_predict(method: str, net: FiniteNet, tasks: TaskSet, config: GDConfig) -> FiniteResult:
    """Train ``net`` with ``method`` on the training tasks and predict the test queries."""
    import jax
    import jax.numpy as jnp

    require(method in FINITE_METHODS, f"unknown method {method!r}; choose one of {', '.join(FINITE_METHODS)}")
    require(net.heads_a is not None or method != "mtl-a", "mtl-a needs the independent heads of init_net")
    train, test = _cast(_task_arrays(tasks), config)
    what = f"{method} at width {net.width} (seed {net.seed})"
    apply_fn, p0 = net.apply_fn, _cast(net.params0, config)
    fs = net.lr_factors
    if method == "head-only":
        preds = _adapt_predict(apply_fn, p0, test, config, True, fs)
        losses = np.zeros(0)
        params = p0
    elif method in ("mtl-a", "mtl-b"):
        n = train["z"].shape[0]
        require(jax.tree_util.tree_leaves(net.heads_a)[0].shape[0] >= n or method == "mtl-b",
                f"init_net made {jax.tree_util.tree_leaves(net.heads_a)[0].shape[0]} heads for {n} training tasks")
        if method == "mtl-b":
            heads = jax.tree_util.tree_map(lambda w: jnp.broadcast_to(w, (n,) + w.shape), p0[-1])
        else:
            heads = jax.tree_util.tree_map(lambda w: w[:n], _cast(net.heads_a, config))
        (body, heads), losses = gradient_descent(
            apply_fn, method, (list(p0[:-1]), heads), (train["z"], train["u"]), config, what, fs)
        # the test head starts from the network's initial head w_0 (variant B: the common head;
        # variant A: a head independent of the training heads); body frozen, head fine-tuned.
        params = _with_head(body, p0[-1])
        preds = _adapt_predict(apply_fn, params, test, config, True, fs)
    elif method in ("anil", "maml"):
        params, losses = gradient_descent(
            apply_fn, method, list(p0), (train["xq"], train["yq"], train["xs"], train["ys"]), config, what, fs)
        preds = _adapt_predict(apply_fn, params, test, config, method == "anil", fs)
    else:  # ntk: plain regression on every training query
        c = train["yq"].shape[-1]
        x, y = train["xq"].reshape(-1, train["xq"].shape[-1]), train["yq"].reshape(-1, c)
        params, losses = gradient_descent(apply_fn, method, list(p0), (x, y), config, what, fs)
        preds = np.asarray(jax.vmap(lambda xq: apply_fn(params, xq))(test["xq"]), np.float64)
    if not np.all(np.isfinite(preds)):
        raise BridgeError(f"{what}: the test predictions are not finite after training; "
                          f"lower the inner step size ({config.inner_step:g}) or the learning rate ({config.outer_lr:g})")
    return FiniteResult(preds, losses, params)


@in_float64
def initial_outputs(net: FiniteNet, x: np.ndarray) -> np.ndarray:
    """f_0(x) = apply(params0, x), (n, c): the initial function the closed forms need."""
    import jax.numpy as jnp

    return np.asarray(net.apply_fn(net.params0, jnp.asarray(x, jnp.float64)), np.float64)
