"""The NTK and NNGP of a finite fully connected ReLU network at initialisation, without a Jacobian,
and the derived law of their fluctuation (docs/theory.md section 10).

The network is :func:`ntk_bridge.engine.networks.fc_network` (NTK parameterisation, every raw
weight and bias standard normal; ``L = spec.depth`` hidden layers of width n; n_0 = d):

    z_1 = (W_std / sqrt d) x W_1 + b_std b_1,   h_k = relu(z_k),
    z_k = (W_std / sqrt n) h_{k-1} W_k + b_std b_k   (k = 2..L),
    f   = (rW / sqrt n) h_L w_r + rb b_r        (rW = readout_W_std, rb = readout_b_std).

With delta_k = df/dz_k (one row of length n per input), the gradient with respect to the raw W_k
is (W_std / sqrt n_{k-1}) h_{k-1}^T delta_k, so the empirical NTK and its readout share are

    Theta_n(x, x') = sum_{k=1}^{L} [W_std^2 <h_{k-1}, h'_{k-1}> / n_{k-1} + b_std^2] <delta_k, delta'_k>
                     + rW^2 <h_L, h'_L> / n + rb^2,
    K_n(x, x')     = rW^2 <h_L, h'_L> / n + rb^2,
    delta_L = (rW / sqrt n) w_r^T * 1[z_L > 0],
    delta_{k-1} = (W_std / sqrt n_{k-1}) (delta_k W_k^T) * 1[z_{k-1} > 0].

:func:`init_kernels` computes them from one forward pass (keeping only the (b, b) Grams
h_k h_k^T / n_k and the ReLU masks) and one backward pass that asks the :class:`WeightSource` for
each layer's weights again instead of storing them: memory O(n^2 + L b n) for width n, not
O(L n^2). All depths of ``depths`` come from one sweep: the depth-l network is the first l hidden
layers of the deepest plus its own readout (nested networks: independent across seeds, not
across the depths of one seed). It equals :func:`ntk_bridge.engine.empirical.empirical_kernels`
(Jacobian contraction) with the same weights to rounding (tests/finite/test_fluctuation.py).

The law (bias-free ReLU, W_std^2 = 2, inputs on the sphere |x|^2 = d; derivation in docs/theory.md
section 10; x one input, r = Theta_n(x, x) / Theta_inf(x, x)):

- :func:`ntk_diag_mean`: E Theta_n(x, x) = rW^2 (L + 1) + rb^2 = Theta_inf(x, x) for every n (exact);
- :func:`ntk_constant`: Var r = c(L) L / n + O(L^2 / n^2), c(L) = 1 + 4 (2L + 1) / (3 (L + 1))
  (3 at L = 1, -> 11/3); :func:`ntk_relvar` gives c(L) L / n times :func:`readout_bias_factor`;
- :func:`nngp_relvar`: Var(K_n(x, x) / K_inf(x, x)) = (1 + 5/n)^L - 1 exactly (rb = 0);
- :func:`hanin_nica_relvar`: exp(5 L / n) - 1, Hanin & Nica's rate (the NNGP's, not the NTK's constant).

The leading form c(L) L / n is within 8% of the exact second moment for L / n <= 1/32 and 16-18%
low at L / n = 1/16 (section 10.4); beyond L / n ~ 1/4 the second moment is heavy-tailed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ntk_bridge.engine.spec import NetSpec, check_inputs
from ntk_bridge.errors import require

READOUT_TAG = 1_000_000     # fold / seed tag of the depth-l readout: READOUT_TAG + l (hidden layers use 1..L)


class WeightSource(Protocol):
    """Raw (standard-normal) weights of hidden layer k (1-based) and of the depth-l readout."""

    def hidden(self, k: int, n_in: int, n_out: int, bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(W (n_in, n_out), b (1, n_out) or None). Asked twice per layer: it must return the same W."""
        ...

    def readout(self, depth: int, n_in: int, bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(w (n_in, 1), b (1, 1) or None) of the depth-``depth`` network's readout."""
        ...


@dataclass(frozen=True)
class KeySource:
    """Weights from the JAX key ``PRNGKey(seed)``: hidden layer k's W from fold_in(fold_in(key, k), 0),
    its b from (..., 1); the depth-l readout from fold_in(key, READOUT_TAG + l). Float64."""

    seed: int

    def _draw(self, tag: int, sub: int, shape: tuple) -> np.ndarray:
        import jax
        import jax.numpy as jnp

        from ntk_bridge.engine.precision import float64

        with float64():
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(self.seed)), tag), sub)
            return np.asarray(jax.random.normal(key, shape, dtype=jnp.float64))

    def hidden(self, k, n_in, n_out, bias):
        return self._draw(k, 0, (n_in, n_out)), (self._draw(k, 1, (1, n_out)) if bias else None)

    def readout(self, depth, n_in, bias):
        tag = READOUT_TAG + depth
        return self._draw(tag, 0, (n_in, 1)), (self._draw(tag, 1, (1, 1)) if bias else None)


@dataclass(frozen=True)
class SeedSource:
    """Weights from numpy's PCG64 seeded with [seed, k, 0] (W) and [seed, k, 1] (b); the depth-l readout
    from [seed, READOUT_TAG + l, .]. About twice as fast as JAX's float64 threefry at width 8192 on CPU."""

    seed: int

    @staticmethod
    def _draw(entropy: list[int], shape: tuple) -> np.ndarray:
        return np.random.default_rng(entropy).standard_normal(shape)

    def hidden(self, k, n_in, n_out, bias):
        s = int(self.seed)
        return self._draw([s, k, 0], (n_in, n_out)), (self._draw([s, k, 1], (1, n_out)) if bias else None)

    def readout(self, depth, n_in, bias):
        s, tag = int(self.seed), READOUT_TAG + depth
        return self._draw([s, tag, 0], (n_in, 1)), (self._draw([s, tag, 1], (1, 1)) if bias else None)


class ParamsSource:
    """The parameters of one network of :func:`ntk_bridge.engine.networks.fc_network` (its ``params``
    list: [(W_1, b_1), (), ..., (W_L, b_L), (), (w_r, b_r)]), e.g. a trained network's initial ones.
    Serves that network's depth only; memory is that of the parameters it holds."""

    def __init__(self, params: Sequence) -> None:
        dense = [p for p in params if len(p) == 2]
        require(len(dense) >= 2, "params must be an fc_network parameter list (hidden layers and a readout)")
        self.layers = [(np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64))
                       for w, b in dense]
        self.depth = len(self.layers) - 1

    def hidden(self, k, n_in, n_out, bias):
        require(1 <= k <= self.depth, f"these params are a depth-{self.depth} network; hidden layer {k} asked")
        w, b = self.layers[k - 1]
        require(w.shape == (n_in, n_out), f"layer {k} has shape {w.shape}, expected {(n_in, n_out)}")
        require(not bias or b is not None, f"layer {k} has no bias but the spec has `b_std` > 0")
        return w, b

    def readout(self, depth, n_in, bias):
        require(depth == self.depth, f"these params are a depth-{self.depth} network; depth {depth} asked")
        w, b = self.layers[-1]
        require(w.shape[1] == 1, "the readout must have one output (the law is per output)")
        return w, b


@dataclass(frozen=True)
class InitKernels:
    """Empirical Theta (b, b), K (b, b) and the initial outputs f0 (b,) of one finite network."""

    theta: np.ndarray
    k: np.ndarray
    f0: np.ndarray


def _check_spec(spec: NetSpec) -> None:
    require(isinstance(spec, NetSpec), f"spec must be a NetSpec (got {type(spec).__name__})")
    require(spec.activation == "relu", f"the Jacobian-free kernel is written for relu (`activation` = {spec.activation!r})")


def _forward(x: np.ndarray, width: int, depth: int, source: WeightSource, spec: NetSpec,
             grams: list, masks: list):
    """Yield (k, h_k (b, n)) for k = 1..depth, appending G_k = h_k h_k^T / n to ``grams`` (which
    starts with G_0 = x x^T / d) and 1[z_k > 0] (b, n) to ``masks``; only the current h is kept."""
    h, bias = x, spec.b_std > 0
    for k in range(1, depth + 1):
        w, b = source.hidden(k, h.shape[1], width, bias)
        z = (spec.W_std / math.sqrt(h.shape[1])) * (h @ w)
        if b is not None and bias:
            z = z + spec.b_std * b
        del w
        masks.append(z > 0)
        h = np.maximum(z, 0.0)
        grams.append(h @ h.T / width)
        yield k, h


def init_kernels(spec: NetSpec, width: int, x: np.ndarray, source: WeightSource,
                 depths: Sequence[int] | None = None) -> dict[int, InitKernels]:
    """{depth l: InitKernels} of the finite network at ``width`` for every l in ``depths``
    (default ``[spec.depth]``; ``spec.depth`` is otherwise ignored), inputs ``x`` (b, d), float64.

    Formula and memory: module docstring. ``f0`` = (rW / sqrt n) h_l w_r + rb b_r of the depth-l net.
    """
    _check_spec(spec)
    require(isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width >= 1,
            f"`width` must be an integer >= 1 (got {width!r})")
    x, _ = check_inputs(x)
    depths = sorted({int(d) for d in (depths or [spec.depth])})
    require(depths[0] >= 1, f"every depth must be >= 1 (got {depths[0]})")
    n, nb, rbias = int(width), x.shape[0], spec.readout_b_std > 0
    rw2, rb2 = spec.readout_W_std ** 2, spec.readout_b_std ** 2
    theta, nngp, f0, readouts = {}, {}, {}, {}
    grams: list[np.ndarray] = [x @ x.T / x.shape[1]]
    masks: list = [None]
    for k, h in _forward(x, n, depths[-1], source, spec, grams, masks):
        if k in depths:
            wr, br = source.readout(k, n, rbias)
            readouts[k] = wr[:, 0]
            f0[k] = (spec.readout_W_std / math.sqrt(n)) * (h @ wr[:, 0]) + (spec.readout_b_std * br[0, 0] if rbias else 0.0)
            nngp[k] = rw2 * grams[k] + rb2
            theta[k] = nngp[k].copy()
    deltas: dict[int, np.ndarray] = {}
    for k in range(depths[-1], 0, -1):
        if k in depths:
            deltas[k] = (spec.readout_W_std / math.sqrt(n)) * readouts.pop(k)[None, :] * masks[k]
        pre = spec.W_std ** 2 * grams[k - 1] + spec.b_std ** 2
        for l, dl in deltas.items():
            theta[l] += pre * (dl @ dl.T)
        if k > 1:
            deltas = _back(deltas, source, k, n, masks[k - 1], spec, nb)
    return {l: InitKernels(theta[l], nngp[l], f0[l]) for l in depths}


def _back(deltas: dict, source: WeightSource, k: int, n: int, mask: np.ndarray, spec: NetSpec, nb: int) -> dict:
    """delta_{k-1} = (W_std / sqrt n) (delta_k W_k^T) * 1[z_{k-1} > 0] for every live depth, one matmul."""
    w, _ = source.hidden(k, n, n, False)
    live = sorted(deltas)
    back = (spec.W_std / math.sqrt(n)) * (np.concatenate([deltas[l] for l in live]) @ w.T)
    return {l: back[i * nb:(i + 1) * nb] * mask for i, l in enumerate(live)}


# ----------------------------------------------------------------------------- the derived law

def _check_law(spec: NetSpec) -> None:
    require(spec.activation == "relu" and spec.b_std == 0 and abs(spec.W_std ** 2 - 2) < 1e-12,
            "the fluctuation law is derived for bias-free ReLU with W_std^2 = 2 (`activation` relu, "
            f"`b_std` 0, `W_std` sqrt 2); got {spec.describe()}")


def ntk_constant(depth) -> np.ndarray:
    """c(L) = 1 + 4 (2L + 1) / (3 (L + 1)): 3 at L = 1, 3.52 at 8, -> 11/3 (docs/theory.md 10.3)."""
    L = np.asarray(depth, np.float64)
    return 1.0 + 4.0 * (2.0 * L + 1.0) / (3.0 * (L + 1.0))


def readout_bias_factor(depth, readout_W_std: float = 1.0, readout_b_std: float = 0.0) -> np.ndarray:
    """(1 + rb^2 / (rW^2 (L + 1)))^-2: the readout bias adds a constant to Theta_n and Theta_inf alike."""
    L = np.asarray(depth, np.float64)
    return (1.0 + readout_b_std ** 2 / (readout_W_std ** 2 * (L + 1.0))) ** -2


def ntk_diag_mean(spec: NetSpec) -> float:
    """E Theta_n(x, x) = rW^2 (L + 1) + rb^2 on the sphere, for every width (= Theta_inf(x, x))."""
    _check_law(spec)
    return spec.readout_W_std ** 2 * (spec.depth + 1) + spec.readout_b_std ** 2


def ntk_relvar(spec: NetSpec, width) -> np.ndarray:
    """Var(Theta_n(x, x) / Theta_inf(x, x)) to leading order: c(L) L / n x readout_bias_factor."""
    _check_law(spec)
    L, n = spec.depth, np.asarray(width, np.float64)
    return ntk_constant(L) * L / n * readout_bias_factor(L, spec.readout_W_std, spec.readout_b_std)


def ntk_relsd(depth, width) -> np.ndarray:
    """sqrt(c(L) L / n): the relative standard deviation of the NTK diagonal (bias-free readout)."""
    L, n = np.asarray(depth, np.float64), np.asarray(width, np.float64)
    return np.sqrt(ntk_constant(L) * L / n)


def nngp_relvar(depth, width) -> np.ndarray:
    """Var(K_n(x, x) / K_inf(x, x)) = (1 + 5/n)^L - 1, exact (no readout bias): each layer multiplies
    |h|^2 / n by an independent (2/n) chi2_m, m ~ Bin(n, 1/2), of mean 1 and variance 5/n."""
    L, n = np.asarray(depth, np.float64), np.asarray(width, np.float64)
    return (1.0 + 5.0 / n) ** L - 1.0


def hanin_nica_relvar(depth, width) -> np.ndarray:
    """exp(5 L / n) - 1 (Hanin & Nica 2020's rate; their "≃" fixes it up to an order-one factor)."""
    return np.exp(5.0 * np.asarray(depth, np.float64) / np.asarray(width, np.float64)) - 1.0
