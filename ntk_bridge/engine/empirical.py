"""Empirical NTK and linearised network of any JAX function ``apply_fn(params, x)``, in plain JAX.

docs/theory.md sections 2 and 6. For a network ``f(params, x)`` with outputs (n, c) the empirical
NTK is ``Theta(x1, x2) = (1/c) sum_c J_c(x1) J_c(x2)^T`` (n1, n2), ``J_c`` the Jacobian of output c
with respect to every parameter: the per-output kernel averaged over the c outputs (neural-tangents'
``trace_axes=(-1,)``, which normalises its trace by c); each output of an NTK-parameterised network
has the same limit, which the closed forms use for all c. Three ways to compute it (Novak et al.,
"Fast Finite Width Neural Tangent Kernel", ICML 2022), picked per architecture by their cost:

- :func:`fc_ntk_and_head_ntk` (the FC networks of :mod:`ntk_bridge.engine.networks`, any depth and
  parameterisation): the exact per-layer formula. A dense layer ``z_l = m_l a_{l-1} W_l + beta_l b_l``
  (``m_l = W_std / sqrt(in)`` in the NTK form, 1 in the standard form) has ``dz_l / dW_l`` =
  ``m_l a_{l-1}`` (outer product with the output's cotangent), so its share of Theta is
  ``m_l^2 <a_{l-1}(x1), a_{l-1}(x2)> * (1/c) sum_c <g_lc(x1), g_lc(x2)>  +  beta_l^2 (1/c) sum_c <g_lc, g_lc'>``
  with ``g_lc = d f_c / d z_l`` (n, width). One forward pass and c backward passes (vmapped) give
  every ``a`` and ``g``; no Jacobian is formed. Cost, with L hidden layers of width w, input d:
  ``~ 2 n c P`` for the passes (``P = d w + (L - 1) w^2 + w c`` parameters) plus
  ``2 n1 n2 (d + L w + L c w + c^2)`` for the Gram products, against the Jacobian contraction's
  ``2 n1 n2 c P``: a factor ``~ w / (c + 1)`` fewer flops per layer in the contraction.
- :func:`empirical_ntk` ``implementation="jacobian"`` (the default for any other network, e.g. the
  Conv-4 and ResNet-12 backbones): per-example Jacobians (``vmap`` over examples of ``jacrev``: c
  backward passes of one example each, ``~ n c FP``, FP the per-example forward cost) contracted
  leaf by leaf (``2 n1 n2 c P``). Memory ``n c P`` numbers, bounded by computing blocks of at most
  ``block`` inputs at a time.
- ``implementation="ntk_vp"``: NTK-vector products (``vjp`` of one example of x2 per output, then a
  ``jvp`` over all of x1), ``~ 2 n1 n2 c FP`` flops and no Jacobian in memory. With the trace over
  outputs it never needs fewer flops than the contraction (``FP >= 2 P`` per example), but it can take
  less time where writing and reading the ``n c P`` Jacobian dominates (neural-tangents' NTK-VP took half
  its Jacobian contraction's time on the MLPs of experiments/bench_empirical.py, 7x on the Conv-4).

Every function is ``jax.jit``-compiled once per network (an ``lru_cache`` keyed by the apply function
or the FC network's definition). ``empirical_ntk`` treats examples as independent (``vmap`` over the
leading axis, neural-tangents' ``vmap_axes=0``); a network whose outputs couple examples (batch norm
in training mode) needs ``per_example=False`` (one Jacobian of the whole batch, ``n`` times dearer).

- :func:`linearize`: ``f_lin(p, x) = f(p0, x) + J(x) (p - p0)``, one ``jax.jvp``; training it is
  exactly kernel regression with ``Theta`` at ``p0``.

Inputs are used at the dtype of the parameters (float64 inside :func:`ntk_bridge.engine.precision.float64`).
All three equal neural-tangents' ``empirical_ntk_fn`` (JACOBIAN_CONTRACTION) and ``linearize`` to
rounding (tests/reference/test_engine_reference.py); experiments/bench_empirical.py times them against
neural-tangents' fastest working mode.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ntk_bridge.engine.parameterization import NTK, Parameterization
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec, check_inputs
from ntk_bridge.errors import require

Params = Any
IMPLEMENTATIONS = ("jacobian", "ntk_vp")
BLOCK = 256          # inputs per Jacobian block (memory block * c * P numbers)


def _as_dtype(params: Params, x):
    """``x`` as a JAX array at the dtype of the first parameter leaf."""
    import jax
    import jax.numpy as jnp

    return jnp.asarray(x, jax.tree_util.tree_leaves(params)[0].dtype)


def _single(apply_fn: Callable) -> Callable:
    """``f(params, xi) -> (c,)``: ``apply_fn`` on one example (a batch of one)."""
    return lambda params, xi: apply_fn(params, xi[None])[0]


@functools.lru_cache(maxsize=64)
def _jacobian_terms_fn(apply_fn: Callable, per_example: bool) -> Callable:
    """jit of ``(params, x1, x2) -> [(1/c) J_c(x1) J_c(x2)^T per leaf]``, leaves in tree order."""
    import jax
    import jax.numpy as jnp

    def jac(params, x):
        if per_example:
            j = jax.vmap(jax.jacrev(_single(apply_fn)), in_axes=(None, 0))(params, x)
            return [a.reshape(a.shape[:2] + (-1,)) for a in jax.tree_util.tree_leaves(j)]
        j = jax.jacrev(apply_fn)(params, x)
        n_out = jax.eval_shape(apply_fn, params, x).shape
        return [a.reshape(n_out + (-1,)) for a in jax.tree_util.tree_leaves(j)]

    def terms(params, x1, x2):
        j1 = jac(params, x1)
        j2 = j1 if x2 is None else jac(params, x2)
        c = j1[0].shape[1]
        return [jnp.einsum("icp,jcp->ij", a, b) / c for a, b in zip(j1, j2)]

    return jax.jit(terms)


@functools.lru_cache(maxsize=64)
def _ntk_vp_fn(apply_fn: Callable) -> Callable:
    """jit of ``(params, x1, x2) -> Theta`` by NTK-vector products: for each example x2_j and output
    c, ``v = vjp(f(x2_j))(e_c)`` (a parameter vector), then ``jvp(f(x1))(v)[:, c]``."""
    import jax
    import jax.numpy as jnp

    one = _single(apply_fn)

    def column(params, x1, xj):
        out, pull = jax.vjp(lambda p: one(p, xj), params)
        eye = jnp.eye(out.shape[0], dtype=out.dtype)

        def per_output(e):
            v = pull(e)[0]
            return jax.jvp(lambda p: apply_fn(p, x1), (params,), (v,))[1] @ e

        return jax.vmap(per_output)(eye).sum(0) / out.shape[0]

    return jax.jit(lambda params, x1, x2: jax.vmap(column, in_axes=(None, None, 0), out_axes=1)(params, x1, x2))


def _blocks(n: int, block: int) -> list[slice]:
    return [slice(i, min(i + block, n)) for i in range(0, n, block)]


def _leaf_terms(apply_fn: Callable, params: Params, x1, x2, per_example: bool = True,
                block: int = BLOCK) -> list:
    """Each leaf's share ``(1/c) sum_c J_c(x1) J_c(x2)^T`` (n1, n2), in tree-leaf order; blocks of
    at most ``block`` inputs per Jacobian (one block when both sets fit)."""
    import jax.numpy as jnp

    fn = _jacobian_terms_fn(apply_fn, bool(per_example))
    x1 = _as_dtype(params, x1)
    x2 = None if x2 is None else _as_dtype(params, x2)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    if not per_example or (n1 <= block and n2 <= block):
        return fn(params, x1, x2)
    other = x1 if x2 is None else x2
    rows = []
    for r in _blocks(n1, block):
        rows.append([fn(params, x1[r], other[c]) for c in _blocks(n2, block)])
    n_leaves = len(rows[0][0])
    return [jnp.block([[blk[leaf] for blk in row] for row in rows]) for leaf in range(n_leaves)]


def empirical_ntk(apply_fn: Callable, params: Params, x1, x2=None, implementation: str = "jacobian",
                  per_example: bool = True, block: int = BLOCK):
    """``Theta(x1, x2)`` (n1, n2) of ``apply_fn`` at ``params``: ``(1/c) sum_c J_c(x1) J_c(x2)^T``.

    ``x2 = None`` means ``x2 = x1`` (the Jacobian is computed once). ``implementation``:
    ``"jacobian"`` (per-example Jacobians contracted, blocks of ``block`` inputs) or ``"ntk_vp"``
    (NTK-vector products); the module docstring gives their costs. For the FC networks of
    :mod:`ntk_bridge.engine.networks` :func:`fc_ntk_and_head_ntk` is cheaper still."""
    require(implementation in IMPLEMENTATIONS,
            f"unknown implementation {implementation!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    if implementation == "ntk_vp":
        x1 = _as_dtype(params, x1)
        return _ntk_vp_fn(apply_fn)(params, x1, x1 if x2 is None else _as_dtype(params, x2))
    return sum(_leaf_terms(apply_fn, params, x1, x2, per_example, block))


def ntk_and_head_ntk(apply_fn: Callable, params: list, x1, x2=None, per_example: bool = True) -> tuple:
    """(Theta, K) (n1, n2) from one Jacobian: Theta over every parameter, K over the head
    ``params[-1]`` only (its leaves are the last in tree order): training only the head is kernel
    regression with K."""
    import jax

    terms = _leaf_terms(apply_fn, params, x1, x2, per_example)
    n_head = len(jax.tree_util.tree_leaves(params[-1]))
    return sum(terms), sum(terms[len(terms) - n_head:])


@functools.lru_cache(maxsize=64)
def _fc_fn(spec: NetSpec, width: int, out_dim: int, param: Parameterization, d: int | None) -> Callable:
    """jit of ``(params, x1, x2) -> (Theta, K)`` by the per-layer formula (module docstring)."""
    import jax
    import jax.numpy as jnp

    from ntk_bridge.engine.networks import fc_layers

    layers = fc_layers(spec, width, out_dim, param, d)
    dense = list(range(0, len(layers), 2))           # [dense, act, dense, act, ..., dense]
    w_std = [spec.W_std] * spec.depth + [spec.readout_W_std]
    b_std = [spec.b_std] * spec.depth + [spec.readout_b_std]

    def parts(params, x):
        """Each dense layer's input a_{l-1} (n, in) and cotangents g_l (c, n, out)."""
        def f(eps):
            a, inputs = x, []
            for k, i in enumerate(dense):
                inputs.append(a)
                z = layers[i].apply(params[i], a) + eps[k]
                a = layers[i + 1].apply((), z) if i + 1 < len(layers) else z
            return a, inputs

        eps0 = [jnp.zeros((x.shape[0], params[i][0].shape[1]), x.dtype) for i in dense]
        out, pull, inputs = jax.vjp(f, eps0, has_aux=True)
        c = out.shape[1]
        cts = jnp.broadcast_to(jnp.eye(c, dtype=x.dtype)[:, None, :], (c,) + out.shape)
        return inputs, jax.vmap(pull)(cts)[0]

    def kernels(params, x1, x2):
        a1, g1 = parts(params, x1)
        a2, g2 = (a1, g1) if x2 is None else parts(params, x2)
        terms = []
        for k, i in enumerate(dense):
            c = g1[k].shape[0]
            gg = jnp.einsum("cnw,cmw->nm", g1[k], g2[k]) / c
            m2 = 1.0 if param.standard_form else w_std[k] ** 2 / a1[k].shape[1]
            term = m2 * (a1[k] @ a2[k].T) * gg
            if params[i][1] is not None:
                term = term + b_std[k] ** 2 * gg
            terms.append(term)
        return sum(terms), terms[-1]

    return jax.jit(kernels)


def fc_ntk_and_head_ntk(spec: NetSpec, width: int, params: list, x1, x2=None, out_dim: int | None = None,
                        param: Parameterization = NTK, d: int | None = None) -> tuple:
    """(Theta, K) (n1, n2) of the FC network ``fc_network(spec, width, out_dim, param, d)`` at
    ``params``, by the per-layer formula (no Jacobian; module docstring): the same numbers as
    :func:`ntk_and_head_ntk` on that network's ``apply_fn``. ``out_dim`` defaults to the readout's."""
    out = int(params[-1][0].shape[1]) if out_dim is None else int(out_dim)
    fn = _fc_fn(spec, int(width), out, param, None if d is None else int(d))
    x1 = _as_dtype(params, x1)
    return fn(params, x1, None if x2 is None else _as_dtype(params, x2))


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

    ``theta``: over all parameters; ``k``: over the readout parameters only (training only the
    head is kernel regression with K); both by the per-layer formula (:func:`fc_ntk_and_head_ntk`). Both -> the analytic kernels as
    width -> infinity, with O(width^-1/2) fluctuations. The network is ``network(spec, width)``
    initialised from ``PRNGKey(seed)``.
    """
    import jax

    x1, x2 = check_inputs(x1, x2)
    init_fn, _ = network(spec, width)
    _, params = init_fn(jax.random.PRNGKey(seed), x1.shape)
    theta, k = fc_ntk_and_head_ntk(spec, width, params, x1, x2)
    return Kernels(theta=np.asarray(theta, np.float64), k=np.asarray(k, np.float64))
