"""Test-time heads on frozen features, solved for many episodes at once.

Every head maps ``support (E, S, D)``, ``support_y (E, S)`` int in ``0..n_way-1`` and
``query (E, Q, D)`` to logits ``(E, Q, n_way)``; all are jit-able and vmapped over episodes.

- ``logreg_logits``: L2-regularised multinomial logistic regression with scikit-learn's
  objective ``C * sum_i CE(W x_i + b, y_i) + 0.5 ||W||_F^2`` (intercept ``b`` not penalised),
  i.e. ``LogisticRegression(C=C)``. The minimiser's rows of ``W`` lie in the span of the support
  features (the gradient of the data term does, and the penalty is isotropic), so each episode is
  solved exactly in the ``m = min(S, D)`` coordinates ``Z = U diag(s)`` of the support's thin SVD
  ``X = U diag(s) V^T`` (``||W||_F = ||B||_F`` for ``W = B V^T``). There the problem has
  ``n_way * (m + 1)`` unknowns and is solved by Newton steps until converged (the largest
  gradient entry of scikit-learn's scaled objective at most ``tol``, its L-BFGS stopping
  measure), each direction from Jacobi-preconditioned conjugate gradients on exact
  Hessian-vector products and each step size picked from {1, 1/2, ..., 1/128, 0} by the
  objective (the largest step with the lowest objective to within rounding, so the objective
  never increases by more than rounding).
  The span basis comes from the eigendecomposition of the support Gram matrix ``X X^T``.
- ``prototype_logits``: ``-||q - c_k||^2`` with ``c_k`` the class mean of the support.
- ``ridge_logits``: ridge regression onto one-hot targets (MetaOptNet-RR),
  ``W = X^T (X X^T + lambda I)^-1 Y``, logits ``Q W``.
  Both are the GBML baselines' per-episode heads (``gbml_core``), vmapped: one core for the
  trained heads and the test-time heads.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ntk_bridge.errors import BridgeError

_STEPS = jnp.array([1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.0])
_TIE_ULPS = 32  # objective values within 32 eps * |objective| of each other count as equal


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows of ``x`` (..., D) divided by their Euclidean norm."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def _logreg_objective(theta, za, y1h, reg, c):
    logits = za @ theta.T
    ce = -(y1h * jax.nn.log_softmax(logits, axis=-1)).sum()
    return c * ce + 0.5 * jnp.sum(reg * theta ** 2)


def _span_coordinates(x, xq, rel_tol: float = 1e-6):
    """Coordinates of support rows ``x`` (S, D) and queries ``xq`` (Q, D) in an orthonormal basis
    of span(x): with ``x x^T = U diag(lam) U^T``, ``Z = U sqrt(lam)`` and
    ``Zq = xq x^T U / sqrt(lam)`` (directions with ``lam <= rel_tol * max lam`` dropped)."""
    lam, u = jnp.linalg.eigh(x @ x.T)
    keep = lam > rel_tol * jnp.max(lam)
    root = jnp.sqrt(jnp.where(keep, lam, 1.0))
    z = jnp.where(keep, u * root, 0.0)
    zq = jnp.where(keep, (xq @ x.T) @ u / root, 0.0)
    return z, zq


def _newton_direction(za, y1h, reg, flat, theta, c, cg_iters: int):
    """Gradient and Newton direction of the objective at ``theta`` (K, m+1).

    ``grad = c (P - Y)^T Za + reg * theta``; the direction solves ``(H + f f^T) delta = grad`` by
    Jacobi-preconditioned conjugate gradients on exact Hessian-vector products
    ``H v = c sum_i (diag p_i - p_i p_i^T) (x) za_i za_i^T v + reg * v``, from delta = 0, frozen
    once the residual is negligible (further steps would divide rounding noise by itself).
    Shifting every intercept by one constant leaves the objective unchanged (H f = 0,
    grad . f = 0 for f = that direction, unit norm); adding f f^T makes H invertible and leaves
    the Newton step H^+ grad unchanged.
    """
    p = jax.nn.softmax(za @ theta.T, axis=-1)  # (S, K)
    grad = c * (p - y1h).T @ za + reg * theta  # (K, m+1)

    def hvp(v):
        a = za @ v.T  # (S, K)
        r = p * a - p * (p * a).sum(-1, keepdims=True)
        return c * r.T @ za + reg * v + flat * (flat * v).sum()

    diag = c * (p * (1 - p)).T @ (za ** 2) + reg + flat ** 2

    def cg(_, carry):
        d, r, zr, q, rz = carry
        hq = hvp(q)
        alpha = rz / jnp.maximum((q * hq).sum(), 1e-30)
        d_new, r_new = d + alpha * q, r - alpha * hq
        zr_new = r_new / diag
        rz_new = (r_new * zr_new).sum()
        q_new = zr_new + rz_new / jnp.maximum(rz, 1e-30) * q
        go = rz > 1e-12 * rz0
        pick = lambda new, old: jnp.where(go, new, old)
        return pick(d_new, d), pick(r_new, r), pick(zr_new, zr), pick(q_new, q), pick(rz_new, rz)

    zr0 = grad / diag
    rz0 = (grad * zr0).sum()
    delta = jax.lax.fori_loop(0, cg_iters, cg, (jnp.zeros_like(grad), grad, zr0, zr0, rz0))[0]
    return grad, jnp.where(jnp.isfinite(delta), delta, 0.0)


def _logreg_one(x, y, xq, n_way: int, c: float, iters: int, cg_iters: int, tol: float):
    """Fit one episode: x (S, D), y (S,), xq (Q, D) -> (query logits (Q, n_way), gradient
    measure at exit, Newton steps taken).

    Newton steps (direction from :func:`_newton_direction`, step size from {1, 1/2, ..., 1/128,
    0}: the largest whose objective is the lowest to within 32 eps of its size, so the
    objective never increases by more than rounding) until the gradient measure
    ``max |grad| / (c S)`` -- the largest entry of the gradient of scikit-learn's scaled
    objective ``mean CE + ||W||^2 / (2 c S)``, the quantity its L-BFGS ``tol`` bounds -- is at
    most ``tol``, or a step leaves ``theta`` unchanged (stalled at rounding), or after ``iters``
    steps.
    """
    s_count, dim = x.shape
    if dim > s_count:  # reduce to the span of the support features
        z, zq = _span_coordinates(x, xq)
    else:
        z, zq = x, xq
    m = z.shape[1]
    za = jnp.concatenate([z, jnp.ones((s_count, 1), z.dtype)], axis=1)  # (S, m+1)
    zqa = jnp.concatenate([zq, jnp.ones((zq.shape[0], 1), zq.dtype)], axis=1)
    y1h = jax.nn.one_hot(y, n_way, dtype=z.dtype)
    reg = jnp.concatenate([jnp.ones((m,), z.dtype), jnp.zeros((1,), z.dtype)])[None, :]  # (1, m+1)
    flat = jnp.broadcast_to((1.0 - reg) / jnp.sqrt(float(n_way)), (n_way, m + 1))
    scale = 1.0 / (c * s_count)

    def measure(theta):
        p = jax.nn.softmax(za @ theta.T, axis=-1)
        return jnp.max(jnp.abs(c * (p - y1h).T @ za + reg * theta)) * scale

    def newton(carry):
        theta, _, it, _ = carry
        _, delta = _newton_direction(za, y1h, reg, flat, theta, c, cg_iters)
        cands = theta[None] - _STEPS.astype(theta.dtype)[:, None, None] * delta[None].astype(theta.dtype)
        vals = jax.vmap(_logreg_objective, (0, None, None, None, None))(cands, za, y1h, reg, c)
        vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
        # the largest step whose objective ties the lowest within rounding: near the optimum
        # the objective's decrease drops below float32 resolution while the gradient test still
        # asks for a step, and a strict argmin would then stall on the zero step
        slack = _TIE_ULPS * jnp.finfo(vals.dtype).eps * jnp.abs(vals[-1])
        new = cands[jnp.argmax(vals <= jnp.min(vals) + slack)]
        return new, measure(new), it + 1, jnp.all(new == theta)

    def going(carry):
        _, gmax, it, stalled = carry
        return (gmax > tol) & (it < iters) & ~stalled

    theta0 = jnp.zeros((n_way, m + 1), z.dtype)
    init = (theta0, measure(theta0), jnp.asarray(0, jnp.int32), jnp.asarray(False))
    theta, gmax, it, _ = jax.lax.while_loop(going, newton, init)
    return zqa @ theta.T, gmax, it


LOGREG_TOL = 1e-4  # scikit-learn's default tol for LogisticRegression (same gradient measure)


@partial(jax.jit, static_argnames=("n_way", "iters", "cg_iters"))
def logreg_fit(support: jax.Array, support_y: jax.Array, query: jax.Array, n_way: int,
               c: float = 3.0, iters: int = 50, cg_iters: int = 20, tol: float = LOGREG_TOL):
    """Multinomial logistic regression (scikit-learn's ``LogisticRegression(C=c, tol=tol)``
    objective and stopping measure) fit on each episode's support: returns query logits
    (E, Q, n_way), the gradient measure at exit (E,) and the Newton steps taken (E,)."""
    return jax.vmap(_logreg_one, (0, 0, 0, None, None, None, None, None))(
        support, support_y, query, n_way, c, iters, cg_iters, tol)


@partial(jax.jit, static_argnames=("n_way", "iters", "cg_iters"))
def logreg_logits(support: jax.Array, support_y: jax.Array, query: jax.Array, n_way: int,
                  c: float = 3.0, iters: int = 50, cg_iters: int = 20, tol: float = LOGREG_TOL) -> jax.Array:
    """Query logits (E, Q, n_way) of :func:`logreg_fit`; ``iters`` caps the Newton steps, which
    stop once the gradient measure is at most ``tol``."""
    return logreg_fit(support, support_y, query, n_way, c, iters, cg_iters, tol)[0]


@partial(jax.jit, static_argnames=("n_way",))
def prototype_logits(support: jax.Array, support_y: jax.Array, query: jax.Array, n_way: int) -> jax.Array:
    """Negative squared distance to the class means of the support: (E, Q, n_way); the
    per-episode ProtoNet head of :mod:`ntk_bridge.train.gbml_core`, vmapped over episodes."""
    from ntk_bridge.train import gbml_core
    return jax.vmap(gbml_core.protonet_logits, (0, 0, 0, None))(support, support_y, query, n_way)


@partial(jax.jit, static_argnames=("n_way",))
def ridge_logits(support: jax.Array, support_y: jax.Array, query: jax.Array, n_way: int,
                 lam: float = 1.0) -> jax.Array:
    """Ridge regression to one-hot targets: ``Q X^T (X X^T + lam I)^-1 Y`` (E, Q, n_way); the
    per-episode MetaOptNet-ridge head of :mod:`ntk_bridge.train.gbml_core` (scale 1, no bias),
    vmapped over episodes."""
    from ntk_bridge.train import gbml_core
    return jax.vmap(gbml_core.ridge_logits, (0, 0, 0, None, None))(support, support_y, query, n_way, lam)


HEADS = ("logreg", "proto", "ridge")


def head_logits(name: str, support, support_y, query, n_way: int, *, logreg_c: float = 3.0,
                logreg_iters: int = 15, ridge_lambda: float = 1.0) -> jax.Array:
    """Dispatch to the head called ``name`` (logreg | proto | ridge)."""
    if name == "logreg":
        return logreg_logits(support, support_y, query, n_way, logreg_c, logreg_iters)
    if name == "proto":
        return prototype_logits(support, support_y, query, n_way)
    if name == "ridge":
        return ridge_logits(support, support_y, query, n_way, ridge_lambda)
    raise BridgeError(f"unknown test head {name!r}; choose one of {', '.join(HEADS)}")
