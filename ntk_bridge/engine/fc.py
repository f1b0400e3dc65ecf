"""Infinite-width kernels of a fully connected network: Theta (NTK), K (head share), Theta_b.

docs/theory.md section 2. For ``f(x) = w . phi(x) / sqrt(m)`` with body ``phi`` of ``depth`` hidden
layers (Dense + activation, NTK parameterisation) and a linear readout:

- ``Theta(x, x')``: the full NTK (neural-tangents' ``kernel_fn(x, x', 'ntk')`` of the same network);
- ``K(x, x')``: the readout's share ``readout_W_std^2 * nngp_body + readout_b_std^2``, which is
  exactly the NNGP kernel (``kernel_fn(x, x', 'nngp')``);
- ``Theta_b = Theta - K``: the body's share.

This module is the project's own engine for them (no neural-tangents at run time):
:func:`depth_sweep` runs the layer recursion once and yields every depth up to ``max(depths)``
(the kernels at depth l + 1 follow from those at depth l), O(L_max n^2) instead of O(L_max^2 n^2)
for per-depth calls; :func:`fc_kernels` is one depth. Both equal neural-tangents' ``kernel_fn`` to
1e-10 relative in float64 (:mod:`ntk_bridge.reference.stax`, tests/reference/test_engine_reference.py).

Inputs must lie on the sphere of radius sqrt(d) (``x . x / d = 1``), see :func:`on_sphere`.
All outputs are float64 numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ntk_bridge.engine._checks import require_memory
from ntk_bridge.engine.spec import Kernels, NetSpec, check_inputs, on_sphere
from ntk_bridge.errors import BridgeError, require

# ----------------------------------------------------------------------------- inputs


# ----------------------------------------------------------------------------- kernels of one depth

def fc_kernels(spec: NetSpec, x1: np.ndarray, x2: np.ndarray | None = None,
            normalize: bool = False) -> Kernels:
    """(Theta, K) at ``spec.depth`` between x1 (n1, d) and x2 (n2, d) (default x1): the one-pass
    recursion of :func:`depth_sweep` stopped at ``spec.depth``. Equal to neural-tangents'
    ``kernel_fn(x1, x2, ('ntk', 'nngp'))`` to 1e-10 relative (:mod:`ntk_bridge.reference.stax`, tested)."""
    return depth_sweep(spec, x1, x2, depths=[spec.depth], normalize=normalize)[spec.depth]


# ----------------------------------------------------------------------------- one-pass sweep
#
# The sweep is memory-bound: per layer a dozen elementwise passes over (n1, n2) arrays. It is
# therefore run on blocks of rows small enough to stay in cache (BLOCK_ELEMENTS entries per
# array), each block going through every layer before the next one starts; the per-point
# variances q (vectors) are computed once for all layers beforehand. All steps are in place.
# (A jax.jit float64 layer step, XLA fusing the elementwise work, was measured slower on CPU:
# the jax-jit-step rows of experiments/results/bench/bench_depth_sweep.txt.)

BLOCK_ELEMENTS = 1 << 15
_OVERFLOW_Q = 1e150


def _q_act(activation: str, q: np.ndarray) -> np.ndarray:
    """Post-activation variance ``E[s(u)^2]`` for ``u ~ N(0, q)``, q of shape (n,).

    ReLU: ``q / 2``; erf: ``(2/pi) arcsin(2q / (1 + 2q))``.
    """
    if activation == "relu":
        return q / 2.0
    return (2 / np.pi) * np.arcsin(2.0 * q / (1.0 + 2.0 * q))


def _q_layers(spec: NetSpec, sq_norm: np.ndarray, n_layers: int) -> np.ndarray:
    """Pre-activation variances ``q_l(x)`` of layers 1..n_layers, shape (n_layers, n).

    ``q_1 = W^2 |x|^2 / d + b^2`` (``sq_norm = |x|^2 / d``), ``q_{l+1} = W^2 E[s(u)^2] + b^2``.
    Raises the overflow error at the first layer whose q is not finite or exceeds 1e150.
    """
    w2, b2 = spec.W_std ** 2, spec.b_std ** 2
    out = np.empty((n_layers, len(sq_norm)))
    out[0] = w2 * sq_norm + b2
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in range(1, n_layers):
            out[layer] = w2 * _q_act(spec.activation, out[layer - 1]) + b2
        bad = ~(np.isfinite(out) & (out < _OVERFLOW_Q)).all(axis=1)
    if bad.any():
        raise BridgeError(
            f"the kernel recursion overflows at depth {int(np.argmax(bad)) + 1} ({spec.describe()}): the "
            "variance grows by W_std^2 / 2 per ReLU layer; lower W_std to sqrt(2) (He) or lower the maximum depth")
    return out


def _row_factors(activation: str, q1: np.ndarray, q2: np.ndarray) -> tuple[tuple, tuple]:
    """Per-layer, per-point factors of the activation step, from q1 (L, n1) and q2 (L, n2).

    ReLU: ``(-1/sqrt q1, sqrt q1 / (2 pi))`` and ``(1/sqrt q2, sqrt q2)``; erf (``a = 1 + 2q``):
    ``(a1, 2/sqrt a1)`` and ``(a2, 1/sqrt a2)``. Each is a tuple of (L, n) arrays.
    """
    if activation == "relu":
        r1, r2 = np.sqrt(q1), np.sqrt(q2)
        return (-1.0 / r1, r1 * (1.0 / (2 * np.pi))), (1.0 / r2, r2)
    a1, a2 = 1.0 + 2.0 * q1, 1.0 + 2.0 * q2
    return (a1, 2.0 / np.sqrt(a1)), (a2, 1.0 / np.sqrt(a2))


def _relu_step(c, ntk, f1, f2, same_idx, tmp, first, out=None):
    """ReLU arc-cosine step in place on a block: c, ntk (b, n2); ``f1``, ``f2`` the factors of
    :func:`_row_factors` at this layer for the block's rows (b,) and the columns (n2,).

    With ``rho = c / sqrt(q1 q2)`` clipped to [-1, 1] and ``t = arccos rho``:
    ``E[relu(u) relu(v)] = sqrt(q1 q2) (sqrt(1 - rho^2) + (pi - t) rho) / (2 pi)`` and
    ``E[relu'(u) relu'(v)] = (pi - t) / (2 pi)``, computed from ``-rho`` as
    ``pi - t = arccos(-rho)``. arccos is ill-conditioned at rho = 1 (a rounding error of 1e-16 in
    rho becomes 1e-8 in the angle and compounds over depth), so the flat indices ``same_idx`` of
    identical input pairs get rho = 1 exactly (then ``(pi - t) / (2 pi) = 1/2`` exactly). After
    the first layer c >= 0 (ReLU features are non-negative), so only rho <= 1 is clipped.
    Returns ``(act_cov, ntk * tdot)``: ``act_cov`` in ``out`` (default ``tmp[0]``), the other in
    ``ntk``; ``c`` and ``tmp`` are scratch.
    """
    s, t = tmp
    nrho = c                                          # -rho
    nrho *= f1[0][:, None]
    nrho *= f2[0][None, :]
    if first:
        np.clip(nrho, -1.0, 1.0, out=nrho)
    else:
        np.maximum(nrho, -1.0, out=nrho)
    if same_idx is not None:
        nrho.flat[same_idx] = -1.0
    np.arccos(nrho, out=t)                            # pi - theta
    np.multiply(nrho, nrho, out=s)
    np.subtract(1.0, s, out=s)
    np.sqrt(s, out=s)
    nrho *= t
    s -= nrho                                         # sin theta + (pi - theta) rho
    s *= f1[1][:, None]
    out = s if out is None else out
    np.multiply(s, f2[1][None, :], out=out)
    t *= 1.0 / (2 * np.pi)                            # tdot = (pi - theta) / (2 pi)
    ntk *= t
    return out, ntk


def _erf_step(c, ntk, f1, f2, same_idx, tmp, first, out=None):
    """Erf step in place on a block: ``act_cov = (2/pi) arcsin(2c / sqrt(a1 a2))`` and
    ``tdot = (4/pi) / sqrt(a1 a2 - 4c^2)`` with ``a = 1 + 2q``; arguments as :func:`_relu_step`."""
    s, t = tmp
    np.multiply(f1[0][:, None], f2[0][None, :], out=t)   # a1 a2
    np.multiply(c, c, out=s)
    s *= 4.0
    np.subtract(t, s, out=s)
    np.sqrt(s, out=s)
    np.divide(4 / np.pi, s, out=s)                    # tdot
    ntk *= s
    c *= f1[1][:, None]
    c *= f2[1][None, :]
    np.clip(c, -1.0, 1.0, out=c)
    np.arcsin(c, out=s)
    out = s if out is None else out
    np.multiply(s, 2 / np.pi, out=out)
    return out, ntk


def _affine(a: np.ndarray, scale: float, shift: float, out: np.ndarray) -> None:
    """``out = scale * a + shift`` in place, skipping a unit scale and a zero shift."""
    if scale != 1.0:
        np.multiply(a, scale, out=out)
    elif out is not a:
        np.copyto(out, a)
    if shift != 0.0:
        out += shift


def _finite(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is finite (a finite sum proves it; else look at each)."""
    return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


_STEP = {"relu": _relu_step, "erf": _erf_step}


def identical_pairs(x1: np.ndarray, x2: np.ndarray) -> np.ndarray | None:
    """Boolean (n1, n2) mask of pairs of identical rows (bitwise), or None if there are none."""
    ids1, ids2 = _row_ids(x1, x2)
    mask = ids1[:, None] == ids2[None, :]
    return mask if mask.any() else None


def _row_ids(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids of the rows of x1 (n1,) and x2 (n2,), equal exactly for equal rows (each row
    compared as one block of bytes, after ``+ 0.0`` turns -0.0 into 0.0)."""
    both = np.ascontiguousarray(np.concatenate([x1, x2]) + 0.0)
    rows = both.view(np.dtype((np.void, both.dtype.itemsize * both.shape[1]))).reshape(-1)
    _, ids = np.unique(rows, return_inverse=True)
    ids = ids.reshape(-1)
    return ids[: len(x1)], ids[len(x1):]


def _check_depths(depths: Iterable[int]) -> list[int]:
    depths = [int(d) for d in depths]
    require(len(depths) > 0, "depths is empty; give at least one depth >= 1")
    require(min(depths) >= 1, f"every depth must be >= 1 (got {min(depths)})")
    return sorted(set(depths))


@dataclass(frozen=True)
class _SweepPlan:
    """What every row block of the sweep shares: the spec, the per-layer factors of
    :func:`_row_factors` of both input sets (arrays (n_layers, n1) / (n_layers, n2)), row ids
    for identical pairs, and the outputs ``{depth: (theta, k)}`` of shape (n1, n2) that the
    blocks fill."""

    spec: NetSpec
    f1: tuple
    f2: tuple
    ids1: np.ndarray
    ids2: np.ndarray
    out: dict


def _sweep_rows(plan: _SweepPlan, c: np.ndarray, rows: slice) -> int | None:
    """Run rows ``rows`` of the first-layer covariance ``c`` (b, n2) through every layer,
    writing ``K = Wr^2 act_cov + br^2`` and ``Theta = Wr^2 (act_cov + ntk_act) + br^2`` into
    ``plan.out``. Returns the first wanted depth whose kernel is not finite in this block, or None."""
    spec = plan.spec
    w2, b2 = spec.W_std ** 2, spec.b_std ** 2
    rw2, rb2 = spec.readout_W_std ** 2, spec.readout_b_std ** 2
    step = _STEP[spec.activation]
    same = np.flatnonzero(plan.ids1[rows, None] == plan.ids2[None, :])
    same = same if len(same) else None
    ntk = c.copy()                                    # input NTK is zero: first Dense gives Sigma
    tmp = (np.empty_like(c), np.empty_like(c))
    bad = None
    unit = rw2 == 1.0 and rb2 == 0.0                  # then K = act_cov, Theta = act_cov + ntk_act
    for layer in range(1, len(plan.f1[0]) + 1):
        f1 = tuple(f[layer - 1, rows] for f in plan.f1)
        f2 = tuple(f[layer - 1] for f in plan.f2)
        wanted = layer in plan.out
        theta, k = (plan.out[layer][0][rows], plan.out[layer][1][rows]) if wanted else (None, None)
        direct = wanted and unit                      # write straight into the outputs
        ac, antk = step(c, ntk, f1, f2, same, tmp, layer == 1, k if direct else None)
        if direct:
            total = np.add(antk, ac, out=theta)       # act_cov + ntk_act
        else:
            total = antk
            total += ac
        if wanted:
            if not direct:
                _affine(total, rw2, rb2, out=theta)
                _affine(ac, rw2, rb2, out=k)
            if bad is None and not (_finite(theta) and _finite(k)):
                bad = layer
        # next layer's Dense: Sigma = W^2 act_cov + b^2, ntk = Sigma + W^2 ntk_act
        c, spare = tmp[1], c
        _affine(ac, w2, b2, out=c)
        _affine(total, w2, b2, out=ntk)
        tmp = (tmp[0], spare)
    return bad


def sweep_bytes(n1: int, n2: int, n_depths: int) -> int:
    """A lower bound of the bytes :func:`depth_sweep` holds at once: Theta and K (n1, n2) per depth,
    and the first layer's Gram with the two temporaries of its product, in float64."""
    return 8 * n1 * n2 * (2 * n_depths + 3)


def depth_sweep(spec: NetSpec, x1: np.ndarray, x2: np.ndarray | None = None,
                depths: Sequence[int] | None = None, normalize: bool = False) -> dict[int, Kernels]:
    """(Theta, K) for every depth in ``depths`` from one pass of the layer recursion.

    ``spec.depth`` is ignored; ``depths`` defaults to ``1..spec.depth``. Per hidden layer
    (NTK parameterisation, as neural-tangents' Dense): pre-activation covariance
    ``Sigma = W^2 * act_cov + b^2`` and NTK ``ntk = Sigma + W^2 * ntk_act``; activation step
    ``act_cov = E[s(u)s(v)]``, ``ntk_act = ntk * E[s'(u)s'(v)]``. At depth l the readout gives
    ``K = Wr^2 act_cov + br^2`` and ``Theta = K + Wr^2 ntk_act``.
    Returns ``{depth: Kernels}`` with arrays of shape (n1, n2).
    """
    x1, x2 = check_inputs(x1, x2)
    x1 = on_sphere(x1, normalize, "x1")
    x2 = on_sphere(x2, normalize, "x2")
    wanted = _check_depths(range(1, spec.depth + 1) if depths is None else depths)
    d = x1.shape[1]
    n1, n2 = len(x1), len(x2)
    require_memory(sweep_bytes(n1, n2, len(wanted)), f"the kernels of {n1} x {n2} points at {len(wanted)} depth(s)",
                   "use fewer points or depths, or compute the kernels in row blocks (slices of x1)")
    q1 = _q_layers(spec, np.sum(x1 * x1, axis=1) / d, wanted[-1])
    q2 = _q_layers(spec, np.sum(x2 * x2, axis=1) / d, wanted[-1])
    f1, f2 = _row_factors(spec.activation, q1, q2)
    ids1, ids2 = _row_ids(x1, x2)
    out = {layer: (np.empty((n1, n2)), np.empty((n1, n2))) for layer in wanted}
    plan = _SweepPlan(spec, f1, f2, ids1, ids2, out)
    gram = spec.W_std ** 2 * (x1 @ x2.T) / d + spec.b_std ** 2     # first Dense on the inputs
    rows_per_block = max(1, BLOCK_ELEMENTS // n2)
    bad = []
    with np.errstate(over="ignore", invalid="ignore"):
        for r0 in range(0, n1, rows_per_block):
            rows = slice(r0, min(n1, r0 + rows_per_block))
            layer = _sweep_rows(plan, gram[rows].copy(), rows)
            if layer is not None:
                bad.append(layer)
    if bad:
        raise BridgeError(f"the kernel at depth {min(bad)} is not finite ({spec.describe()}); "
                          "lower W_std / b_std or the maximum depth")
    return {layer: Kernels(theta=theta, k=k) for layer, (theta, k) in out.items()}
