"""Empirical NTK and linearised network of any JAX function ``apply_fn(params, x)``, in plain JAX.

docs/theory.md sections 2 and 6. For a network ``f(params, x)`` with outputs (n, c):

- :func:`empirical_ntk`: ``Theta(x1, x2) = (1/c) sum_c J_c(x1) J_c(x2)^T`` (n1, n2), ``J_c`` the
  Jacobian of output c with respect to every leaf of ``params``: the per-output kernel, averaged
  over the c outputs (neural-tangents' ``trace_axes=(-1,)``, which normalises its trace by c); each
  output of an NTK-parameterised network has the same limit, which the closed forms use for all c;
  computed as Jacobians (``jax.jacrev``) contracted leaf by leaf;
- :func:`linearize`: ``f_lin(p, x) = f(p0, x) + J(x) (p - p0)``, one ``jax.jvp``; training it is
  exactly kernel regression with ``Theta`` at ``p0``.

Inputs are used at the dtype of the parameters (float64 inside :func:`ntk_bridge.engine.precision.float64`).
Both equal neural-tangents' ``empirical_ntk_fn`` (JACOBIAN_CONTRACTION) and ``linearize`` to
rounding (tests/reference/test_engine_reference.py).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec, check_inputs

Params = Any


def _jacobian_leaves(apply_fn: Callable, params: Params, x) -> list:
    """Jacobian of ``apply_fn(params, x)`` (n, c) w.r.t. each leaf: arrays (n, c, leaf.size)."""
    import jax

    jac = jax.jacrev(apply_fn)(params, x)
    n_out = jax.eval_shape(apply_fn, params, x).shape          # the output's shape, not computed
    return [j.reshape(n_out + (-1,)) for j in jax.tree_util.tree_leaves(jac)]


def _leaf_terms(apply_fn: Callable, params: Params, x1, x2) -> list:
    """Each leaf's share ``(1/c) sum_c J_c(x1) J_c(x2)^T`` (n1, n2), in tree-leaf order."""
    import jax.numpy as jnp

    j1 = _jacobian_leaves(apply_fn, params, x1)
    j2 = j1 if x2 is None else _jacobian_leaves(apply_fn, params, x2)
    c = j1[0].shape[1]
    return [jnp.einsum("icp,jcp->ij", a, b) / c for a, b in zip(j1, j2)]


def empirical_ntk(apply_fn: Callable, params: Params, x1, x2=None):
    """``Theta(x1, x2)`` (n1, n2) of ``apply_fn`` at ``params``: ``(1/c) sum_c J_c(x1) J_c(x2)^T``.

    ``x2 = None`` means ``x2 = x1`` (the Jacobian is computed once)."""
    return sum(_leaf_terms(apply_fn, params, x1, x2))


def ntk_and_head_ntk(apply_fn: Callable, params: list, x1, x2=None) -> tuple:
    """(Theta, K) (n1, n2) from one Jacobian: Theta over every parameter, K over the head
    ``params[-1]`` only (its leaves are the last in tree order): training only the head is kernel
    regression with K."""
    import jax

    terms = _leaf_terms(apply_fn, params, x1, x2)
    n_head = len(jax.tree_util.tree_leaves(params[-1]))
    return sum(terms), sum(terms[len(terms) - n_head:])


def linearize(apply_fn: Callable, params0: Params) -> Callable:
    """``f_lin(params, x) = f(params0, x) + J_params0(x) (params - params0)`` (one ``jax.jvp``)."""
    import jax

    def f_lin(params, x, **kwargs):
        delta = jax.tree_util.tree_map(lambda p, p0: p - p0, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df

    return f_lin


def network(spec: NetSpec, width: int = 512, out_dim: int = 1):
    """``(init_fn, apply_fn)`` of ``spec`` at finite ``width`` (:func:`ntk_bridge.engine.networks.fc_network`).

    The finite network and its infinite-width kernels come from one definition; ``params[-1]`` is
    the readout (head) and ``params[:-1]`` the body.
    """
    from ntk_bridge.engine.networks import fc_network

    return fc_network(spec, width, out_dim)


@in_float64
def empirical_kernels(spec: NetSpec, width: int, seed: int, x1: np.ndarray,
                      x2: np.ndarray | None = None) -> Kernels:
    """Empirical NTK of a finite network at initialisation (a Monte-Carlo check of the limits).

    ``theta``: Jacobian contraction over all parameters; ``k``: over the readout parameters only
    (training only the head is kernel regression with K). Both -> the analytic kernels as
    width -> infinity, with O(width^-1/2) fluctuations. The network is ``network(spec, width)``
    initialised from ``PRNGKey(seed)``.
    """
    import jax

    from ntk_bridge.engine.empirical import ntk_and_head_ntk

    x1, x2 = check_inputs(x1, x2)
    init_fn, apply_fn = network(spec, width)
    _, params = init_fn(jax.random.PRNGKey(seed), x1.shape)
    theta, k = ntk_and_head_ntk(apply_fn, params, x1, x2)
    return Kernels(theta=np.asarray(theta, np.float64), k=np.asarray(k, np.float64))
