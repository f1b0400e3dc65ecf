"""Infinite-width kernels of a fully connected network: Theta (NTK), K (head share), Theta_b.

theory.md section 2. For ``f(x) = w . phi(x) / sqrt(m)`` with body ``phi`` of ``depth`` hidden
layers (Dense + activation, NTK parameterisation) and a linear readout:

- ``Theta(x, x')``: the full NTK, ``kernel_fn(x, x', 'ntk')`` of the neural-tangents network;
- ``K(x, x')``: the readout's share ``readout_W_std^2 * nngp_body + readout_b_std^2``, which is
  exactly ``kernel_fn(x, x', 'nngp')`` of the same network;
- ``Theta_b = Theta - K``: the body's share.

Two ways to compute them, equal to 1e-10 (tested):

- :func:`nt_kernels`: neural-tangents' own ``kernel_fn`` for one depth;
- :func:`depth_sweep`: one pass through the layer recursion that yields every depth up to
  ``max(depths)`` (the kernels at depth l + 1 follow from those at depth l), O(L_max n^2)
  instead of O(L_max^2 n^2) for per-depth calls.

Inputs must lie on the sphere of radius sqrt(d) (``x . x / d = 1``), see :func:`on_sphere`.
All outputs are float64 numpy arrays.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from ntk_bridge.errors import BridgeError, require

ACTIVATIONS = ("relu", "erf")
SPHERE_RTOL = 1e-6


@dataclass(frozen=True)
class NetSpec:
    """A fully connected network: ``depth`` x [Dense(width, W_std, b_std), activation], readout.

    The width is not part of the spec: the kernels are its infinite-width limit, and
    :func:`network` builds a finite one of any width from the same definition.
    """

    depth: int = 1
    activation: str = "relu"
    W_std: float = math.sqrt(2.0)
    b_std: float = 0.0
    readout_W_std: float = 1.0
    readout_b_std: float = 0.0

    def __post_init__(self):
        require(isinstance(self.depth, (int, np.integer)) and self.depth >= 1,
                f"depth must be an integer >= 1 (got {self.depth!r}); a depth-0 network has no body")
        require(self.activation in ACTIVATIONS,
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        for name in ("W_std", "b_std", "readout_W_std", "readout_b_std"):
            v = getattr(self, name)
            require(np.isfinite(v) and v >= 0, f"{name} must be finite and >= 0 (got {v!r})")
        require(self.W_std > 0 and self.readout_W_std > 0,
                "W_std and readout_W_std must be > 0: a zero weight scale gives a constant network")

    def with_depth(self, depth: int) -> "NetSpec":
        return replace(self, depth=int(depth))

    def describe(self) -> str:
        return (f"{self.activation} W_std={self.W_std:.4g} b_std={self.b_std:.4g} "
                f"readout_W_std={self.readout_W_std:.4g} readout_b_std={self.readout_b_std:.4g}")


@dataclass(frozen=True)
class Kernels:
    """Theta and K between two input sets, shapes (n1, n2); ``theta_b = theta - k``."""

    theta: np.ndarray
    k: np.ndarray

    @property
    def theta_b(self) -> np.ndarray:
        return self.theta - self.k


# ----------------------------------------------------------------------------- inputs

def check_inputs(x1: np.ndarray, x2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate two input matrices (n, d) with the same d; return float64 copies."""
    out = []
    for name, x in (("x1", x1), ("x2", x1 if x2 is None else x2)):
        x = np.asarray(x, dtype=np.float64)
        require(x.ndim == 2, f"{name} must be a 2-D array (n_points, d); got shape {x.shape}")
        require(x.shape[0] >= 1 and x.shape[1] >= 1, f"{name} is empty (shape {x.shape})")
        require(bool(np.all(np.isfinite(x))), f"{name} contains NaN or inf values; clean the inputs")
        out.append(x)
    require(out[0].shape[1] == out[1].shape[1],
            f"x1 and x2 have different input dimensions ({out[0].shape[1]} vs {out[1].shape[1]})")
    return out[0], out[1]


def to_sphere(x: np.ndarray) -> np.ndarray:
    """Project rows of ``x`` (n, d) onto the sphere of radius sqrt(d): ``x . x / d = 1``."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    require(bool(np.all(norms > 0)), "an input row is all zeros and cannot be put on the sphere")
    return x / norms * math.sqrt(x.shape[-1])


def on_sphere(x: np.ndarray, normalize: bool = False, name: str = "inputs") -> np.ndarray:
    """Check that rows of ``x`` have ``x . x / d = 1`` (theory.md section 1).

    Off the sphere: with ``normalize=True`` project them and warn; otherwise refuse with a
    one-line error that names the worst row.
    """
    x = np.asarray(x, dtype=np.float64)
    sq = np.sum(x * x, axis=-1) / x.shape[-1]
    bad = np.abs(sq - 1.0) > SPHERE_RTOL
    if not np.any(bad):
        return x
    worst = int(np.argmax(np.abs(sq - 1.0)))
    msg = (f"{name} are off the sphere of radius sqrt(d) (row {worst} has x.x/d = {sq[worst]:.4g}, "
           f"expected 1; {int(bad.sum())} of {len(sq)} rows off)")
    if normalize:
        warnings.warn(msg + "; projected onto the sphere", stacklevel=2)
        return to_sphere(x)
    raise BridgeError(msg + "; pass normalize=True or call ntk_bridge.kernels.to_sphere(x)")


# ----------------------------------------------------------------------------- neural-tangents

def stax_layers(spec: NetSpec, width: int, out_dim: int = 1) -> tuple[list, object]:
    """The stax layers of ``spec`` at ``width``: (hidden layers, readout layer)."""
    from ntk_bridge.nt_backend import stax as _stax

    stax = _stax()
    require(isinstance(width, (int, np.integer)) and width >= 1,
            f"width must be an integer >= 1 (got {width!r})")
    act = stax.Relu() if spec.activation == "relu" else stax.Erf()
    b = spec.b_std if spec.b_std > 0 else None
    hidden = []
    for _ in range(spec.depth):
        hidden += [stax.Dense(int(width), W_std=spec.W_std, b_std=b), act]
    rb = spec.readout_b_std if spec.readout_b_std > 0 else None
    readout = stax.Dense(int(out_dim), W_std=spec.readout_W_std, b_std=rb)
    return hidden, readout


def network(spec: NetSpec, width: int = 512, out_dim: int = 1):
    """``(init_fn, apply_fn, kernel_fn)`` of ``spec`` (neural-tangents ``stax.serial``).

    The finite network of width ``width`` and its infinite-width kernels come from one
    definition; ``params[-1]`` is the readout (head) and ``params[:-1]`` the body.
    """
    from ntk_bridge.nt_backend import stax as _stax

    hidden, readout = stax_layers(spec, width, out_dim)
    return _stax().serial(*hidden, readout)


def nt_kernels(spec: NetSpec, x1: np.ndarray, x2: np.ndarray | None = None,
               normalize: bool = False) -> Kernels:
    """(Theta, K) at ``spec.depth`` from neural-tangents' ``kernel_fn(x1, x2, ('ntk', 'nngp'))``."""
    x1, x2 = check_inputs(x1, x2)
    x1 = on_sphere(x1, normalize, "x1")
    x2 = on_sphere(x2, normalize, "x2")
    _, _, kernel_fn = network(spec)
    out = kernel_fn(x1, x2, ("ntk", "nngp"))
    return Kernels(theta=np.asarray(out[0], np.float64), k=np.asarray(out[1], np.float64))


def empirical_kernels(spec: NetSpec, width: int, seed: int, x1: np.ndarray,
                      x2: np.ndarray | None = None) -> Kernels:
    """Empirical NTK of a finite network at initialisation (a Monte-Carlo check of the limits).

    ``theta``: Jacobian contraction over all parameters; ``k``: over the readout parameters only
    (training only the head is kernel regression with K). Both -> the analytic kernels as
    width -> infinity, with O(width^-1/2) fluctuations.
    """
    import jax

    from ntk_bridge.nt_backend import nt as _nt

    nt = _nt()
    x1, x2 = check_inputs(x1, x2)
    init_fn, apply_fn, _ = network(spec, width)
    _, params = init_fn(jax.random.PRNGKey(seed), x1.shape)
    impl = nt.NtkImplementation.JACOBIAN_CONTRACTION
    theta = nt.empirical_ntk_fn(apply_fn, implementation=impl)(x1, x2, params)

    body = params[:-1]

    def head_apply(head, x, **kw):
        return apply_fn(list(body) + [head], x, **kw)

    k = nt.empirical_ntk_fn(head_apply, implementation=impl)(x1, x2, params[-1])
    return Kernels(theta=np.asarray(theta, np.float64), k=np.asarray(k, np.float64))


# ----------------------------------------------------------------------------- one-pass sweep

def _act_relu(q1, q2, c, ntk, same):
    """ReLU arc-cosine step: E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]).

    arccos is ill-conditioned at rho = 1 (a rounding error of 1e-16 in rho becomes 1e-8 in the
    angle and compounds over depth), so pairs of identical inputs (the boolean mask ``same``,
    or None) get rho = 1 exactly.
    """
    norm = np.sqrt(np.outer(q1, q2))
    rho = np.clip(c / norm, -1.0, 1.0)
    if same is not None:
        rho[same] = 1.0
    theta = np.arccos(rho)
    c_new = norm / (2 * np.pi) * (np.sqrt(1.0 - rho * rho) + (np.pi - theta) * rho)
    tdot = (np.pi - theta) / (2 * np.pi)
    return q1 / 2.0, q2 / 2.0, c_new, ntk * tdot


def _act_erf(q1, q2, c, ntk, same):
    """Erf step: (2/pi) arcsin(2c / sqrt((1+2q1)(1+2q2))), derivative kernel (4/pi) / sqrt(...)."""
    a1, a2 = 1.0 + 2.0 * q1, 1.0 + 2.0 * q2
    denom = np.outer(a1, a2)
    c_new = (2 / np.pi) * np.arcsin(np.clip(2.0 * c / np.sqrt(denom), -1.0, 1.0))
    tdot = (4 / np.pi) / np.sqrt(denom - 4.0 * c * c)
    q1n = (2 / np.pi) * np.arcsin(2.0 * q1 / a1)
    q2n = (2 / np.pi) * np.arcsin(2.0 * q2 / a2)
    return q1n, q2n, c_new, ntk * tdot


_ACT = {"relu": _act_relu, "erf": _act_erf}


def identical_pairs(x1: np.ndarray, x2: np.ndarray) -> np.ndarray | None:
    """Boolean (n1, n2) mask of pairs of identical rows (bitwise), or None if there are none."""
    _, ids = np.unique(np.concatenate([x1, x2]), axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    mask = ids[: len(x1), None] == ids[None, len(x1):]
    return mask if mask.any() else None


def _check_depths(depths: Iterable[int]) -> list[int]:
    depths = [int(d) for d in depths]
    require(len(depths) > 0, "depths is empty; give at least one depth >= 1")
    require(min(depths) >= 1, f"every depth must be >= 1 (got {min(depths)})")
    return sorted(set(depths))


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
    same = identical_pairs(x1, x2)
    wanted = _check_depths(range(1, spec.depth + 1) if depths is None else depths)
    d = x1.shape[1]
    w2, b2 = spec.W_std ** 2, spec.b_std ** 2
    rw2, rb2 = spec.readout_W_std ** 2, spec.readout_b_std ** 2
    step = _ACT[spec.activation]
    # first Dense layer on the inputs (input NTK is zero)
    c = w2 * (x1 @ x2.T) / d + b2
    q1 = w2 * np.sum(x1 * x1, axis=1) / d + b2
    q2 = w2 * np.sum(x2 * x2, axis=1) / d + b2
    ntk = c.copy()
    out: dict[int, Kernels] = {}
    want = set(wanted)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in range(1, wanted[-1] + 1):
            if not (np.all(np.isfinite(q1)) and np.all(np.isfinite(q2)) and q1.max() < 1e150 and q2.max() < 1e150):
                raise BridgeError(
                    f"the kernel recursion overflows at depth {layer} ({spec.describe()}): the variance "
                    "grows by W_std^2 / 2 per ReLU layer; lower W_std to sqrt(2) (He) or lower the maximum depth")
            aq1, aq2, ac, antk = step(q1, q2, c, ntk, same)
            if layer in want:
                k = rw2 * ac + rb2
                out[layer] = Kernels(theta=k + rw2 * antk, k=k)
            q1, q2 = w2 * aq1 + b2, w2 * aq2 + b2
            c = w2 * ac + b2
            ntk = c + w2 * antk
    for layer, kern in out.items():
        if not (np.all(np.isfinite(kern.theta)) and np.all(np.isfinite(kern.k))):
            raise BridgeError(f"the kernel at depth {layer} is not finite ({spec.describe()}); "
                              "lower W_std / b_std or the maximum depth")
    return out
