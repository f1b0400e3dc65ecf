"""Pure cores of the GBML baselines: episode heads and the MAML inner loop.

Everything here is a pure function of arrays / pytrees (no flax modules, no state), so it can be
tested on a tiny network and reused by :mod:`ntk_bridge.train.gbml` on any backbone.

Shapes: ``S`` support examples, ``Q`` queries, ``D`` feature dimension, ``N`` = n_way.

- :func:`protonet_logits`: nearest prototype, ``logits[q, k] = -||f_q - c_k||^2`` with
  ``c_k`` the mean support feature of class ``k`` (Snell et al. 2017).
- :func:`ridge_weights` / :func:`ridge_logits`: closed-form ridge head on support features
  (R2D2, Bertinetto et al. 2019; MetaOptNet-RR, Lee et al. 2019),
  ``W = X^T (X X^T + lam I_S)^{-1} Y`` (dual form, an S x S solve, equal to the primal
  ``(X^T X + lam I_D)^{-1} X^T Y``), logits ``scale * f_q W + bias``; differentiable in ``X``.
- :func:`inner_adapt` / :func:`maml_meta_loss`: MAML's inner loop of plain gradient steps
  ``theta <- theta - alpha * grad L_support(theta)``; second order by default (the outer
  gradient differentiates through the inner gradients), first order with ``first_order=True``
  (inner gradients under ``stop_gradient``), and ``remat=True`` wraps each inner step in
  ``jax.checkpoint`` so activations are recomputed in the backward pass instead of stored
  (memory O(one step) instead of O(steps), for about one extra forward+backward per step).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def one_hot(labels: jax.Array, n_way: int, dtype=jnp.float32) -> jax.Array:
    """(S,) int labels in 0..n_way-1 -> (S, n_way) one-hot."""
    return jax.nn.one_hot(labels, n_way, dtype=dtype)


def prototypes(support_feats: jax.Array, support_labels: jax.Array, n_way: int) -> jax.Array:
    """Class means: (S, D), (S,) -> (N, D), ``c_k = mean_{i: y_i = k} f_i``."""
    y = one_hot(support_labels, n_way, support_feats.dtype)            # (S, N)
    counts = jnp.maximum(y.sum(axis=0), 1.0)                           # (N,)
    return (y.T @ support_feats) / counts[:, None]


def protonet_logits(support_feats: jax.Array, support_labels: jax.Array,
                    query_feats: jax.Array, n_way: int) -> jax.Array:
    """Negative squared Euclidean distances to the prototypes: (Q, N).

    ``-||f_q - c_k||^2 = -||f_q||^2 + 2 f_q.c_k - ||c_k||^2`` (expanded form, one matmul).
    """
    c = prototypes(support_feats, support_labels, n_way)
    qq = jnp.sum(query_feats ** 2, axis=-1, keepdims=True)             # (Q, 1)
    cc = jnp.sum(c ** 2, axis=-1)[None, :]                             # (1, N)
    return -(qq - 2.0 * query_feats @ c.T + cc)


def ridge_weights(support_feats: jax.Array, support_labels: jax.Array, n_way: int,
                  lam: float | jax.Array) -> jax.Array:
    """Ridge regression onto one-hot targets, dual form: (S, D) -> W (D, N).

    ``W = X^T (X X^T + lam I_S)^{-1} Y`` minimises ``||X W - Y||^2 + lam ||W||^2`` (no bias).
    """
    x = support_feats
    y = one_hot(support_labels, n_way, x.dtype)
    gram = x @ x.T + lam * jnp.eye(x.shape[0], dtype=x.dtype)
    alpha = jnp.linalg.solve(gram, y)                                  # (S, N)
    return x.T @ alpha


def ridge_logits(support_feats: jax.Array, support_labels: jax.Array, query_feats: jax.Array,
                 n_way: int, lam: float | jax.Array, scale: float | jax.Array = 1.0,
                 bias: float | jax.Array = 0.0) -> jax.Array:
    """``scale * f_q W + bias`` with W from :func:`ridge_weights`: (Q, N)."""
    w = ridge_weights(support_feats, support_labels, n_way, lam)
    return scale * (query_feats @ w) + bias


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over the rows of (B, N) logits with (B,) int labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose arg-max equals the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def sgd_step(params: PyTree, grads: PyTree, lr: float | jax.Array) -> PyTree:
    """``theta - lr * g`` over a pytree."""
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)


def inner_adapt(support_loss: Callable[[PyTree], tuple[jax.Array, Any]], params: PyTree,
                steps: int, lr: float | jax.Array, *, first_order: bool = False,
                remat: bool = False) -> tuple[PyTree, Any]:
    """MAML's inner loop: ``steps`` gradient steps of ``support_loss`` from ``params``.

    ``support_loss(params) -> (loss, aux)``. Returns the adapted params and the ``aux`` of the
    first step (evaluated at the un-adapted ``params``; used for batch-norm running statistics).
    Differentiable: the outer gradient flows through every inner gradient (second order) unless
    ``first_order`` (then each inner gradient is a constant, FOMAML). ``remat`` recomputes each
    inner step in the backward pass (``jax.checkpoint``) to cut activation memory.
    """
    if steps < 1:
        raise ValueError("inner_adapt needs steps >= 1")
    grad_fn = jax.grad(support_loss, has_aux=True)

    def step(p):
        g, aux = grad_fn(p)
        if first_order:
            g = jax.lax.stop_gradient(g)
        return sgd_step(p, g, lr), aux

    if remat:
        step = jax.checkpoint(step)
    params, first_aux = step(params)
    if steps > 1:  # a scan compiles one step body instead of unrolling steps - 1 copies
        params, _ = jax.lax.scan(lambda p, _: (step(p)[0], None), params, None, length=steps - 1)
    return params, first_aux


def maml_meta_loss(loss_fn: Callable[[PyTree, Any, Any], tuple[jax.Array, Any]],
                   params: PyTree, support: tuple[Any, Any], query: tuple[Any, Any],
                   steps: int, lr: float | jax.Array, *, first_order: bool = False,
                   remat: bool = False) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """Query loss after adapting ``params`` on the support set.

    ``loss_fn(params, x, y) -> (loss, aux)``; ``aux`` should contain the logits under key
    ``"logits"`` when the caller wants accuracies. Returns ``(query_loss, (query_logits_aux,
    support_aux_of_first_step))`` so that ``jax.grad(..., has_aux=True)`` gives the meta-gradient.
    """
    sx, sy = support
    qx, qy = query
    adapted, support_aux = inner_adapt(lambda p: loss_fn(p, sx, sy), params, steps, lr,
                                       first_order=first_order, remat=remat)
    q_loss, q_aux = loss_fn(adapted, qx, qy)
    return q_loss, (q_aux, support_aux)
