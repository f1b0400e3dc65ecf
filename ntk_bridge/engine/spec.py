"""What a fully connected network is and what its kernels are: :class:`NetSpec` (depth, activation,
weight and bias stds) and :class:`Kernels` (Theta = ``ntk``, K = ``nngp``), with the input checks
every kernel function shares (inputs on the sphere of radius sqrt(d), docs/theory.md section 2).

The engine (:mod:`ntk_bridge.engine.fc`), the finite networks (:mod:`ntk_bridge.engine.networks`) and
the closed forms all take these types; nothing here computes a kernel.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ntk_bridge.engine._checks import real_array
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

    @property
    def ntk(self) -> np.ndarray:
        """The NTK Theta (neural-tangents' name)."""
        return self.theta

    @property
    def nngp(self) -> np.ndarray:
        """The NNGP kernel K, the readout's share of Theta (neural-tangents' name)."""
        return self.k


def check_inputs(x1: np.ndarray, x2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate two input matrices (n, d) with the same d; return float64 copies."""
    out = []
    for name, x in (("x1", x1), ("x2", x1 if x2 is None else x2)):
        x = real_array(x, name)
        require(x.ndim == 2, f"{name} must be a 2-D array (n_points, d); got shape {x.shape}")
        require(x.shape[0] >= 1 and x.shape[1] >= 1, f"{name} is empty (shape {x.shape})")
        out.append(x)
    require(out[0].shape[1] == out[1].shape[1],
            f"x1 and x2 have different input dimensions ({out[0].shape[1]} vs {out[1].shape[1]})")
    return out[0], out[1]


def to_sphere(x: np.ndarray) -> np.ndarray:
    """Project rows of ``x`` (n, d) onto the sphere of radius sqrt(d): ``x . x / d = 1``."""
    x = real_array(x, "x")
    require(x.ndim >= 1 and x.shape[-1] >= 1, f"x must be an array (n, d) of input rows; got shape {x.shape}")
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    require(bool(np.all(norms > 0)), "an input row is all zeros and cannot be put on the sphere")
    return x / norms * math.sqrt(x.shape[-1])


def on_sphere(x: np.ndarray, normalize: bool = False, name: str = "inputs") -> np.ndarray:
    """Check that rows of ``x`` have ``x . x / d = 1`` (docs/theory.md section 1).

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
    raise BridgeError(msg + "; project them with nb.to_sphere(x) (ntk_bridge.to_sphere) or pass normalize=True")
