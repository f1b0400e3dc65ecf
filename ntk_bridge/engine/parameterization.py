"""Parameterizations of the finite MLPs: NTK (the default), standard (SP) and maximal update (muP).

A dense layer of the engine (:func:`ntk_bridge.engine.networks.dense`) computes ``y = m x w + b_std b``
with a multiplier ``m``, trainable weights ``w ~ N(0, s^2)`` and, in training, plain SGD steps of
size ``r eta`` on ``w`` (``eta`` the global step size of :mod:`ntk_bridge.finite.training`).
Only ``m^2 s^2`` (the variance of the effective weight ``W = m w``) and ``m^2 r`` (the step size
seen by ``W``) enter the trained function, so one layer form carries every parameterisation.

With width ``n``, input dimension ``d``, ``sigma = W_std``, ``sigma_r = readout_W_std`` and the
base width ``n0`` (``base_width``, default 64), the table implemented here is:

=========  ======================  ===================  ============  ======================  ===================
param      layer                   multiplier m         init std s    SGD step r eta          effective Var W, lr
=========  ======================  ===================  ============  ======================  ===================
ntk        input  (d -> n)         sigma / sqrt(d)      1             eta                     sigma^2/d, sigma^2/d
ntk        hidden (n -> n)         sigma / sqrt(n)      1             eta                     sigma^2/n, sigma^2/n
ntk        readout (n -> c)        sigma_r / sqrt(n)    1             eta                     sigma_r^2/n, sigma_r^2/n
standard   input                   1                    sigma/sqrt(d) eta sigma^2/d           sigma^2/d, sigma^2/d
standard   hidden                  1                    sigma/sqrt(n) eta sigma^2/n0          sigma^2/n, sigma^2/n0
standard   readout                 1                    sigma_r/sqrt(n) eta sigma_r^2/n0      sigma_r^2/n, sigma_r^2/n0
mup        input                   sigma / sqrt(d)      1             eta n/n0                sigma^2/d, sigma^2 n/(d n0)
mup        hidden                  sigma / sqrt(n)      1             eta n/n0                sigma^2/n, sigma^2/n0
mup        readout                 sigma_r / sqrt(n)    sqrt(n0/n)    eta                     sigma_r^2 n0/n^2, sigma_r^2/n
=========  ======================  ===================  ============  ======================  ===================

Biases (``b_std > 0``) take their layer's step ``r``; a bias's effective lr is then constant in n
for the readout and ``prop. n`` below it, as muP asks (Yang & Hu 2021, "all biases" rows).

muP is Yang & Hu's maximal-update parameterisation for SGD (Tensor Programs IV, ICML 2021; Tensor
Programs V, Table 3: input weights init var 1/fan_in and lr eta * fan_out, hidden weights 1/fan_in
and eta, output weights 1/fan_in^2 and eta / fan_in). In the effective column above the exponents
of n are exactly those (input lr prop. n, hidden lr constant, readout var prop. n^-2 and lr prop.
n^-1); the abc-form used here (multipliers of NTK form, the width in s and r) is one of the
equivalent forms of that table (TP IV's symmetry a -> a + t, b -> b - t, c -> c - 2t). The
constants are set so that at ``n = n0`` muP IS the NTK network (same init, same steps): widths
above n0 differ only by the muP scaling. Its initial function-space kernel is the NTK's in
expectation (body terms: readout variance x body lr = (n0/n)(n/n0) = 1), so the outer learning
rate chosen from the infinite-width NTK serves both; at init the muP output is O(n^-1/2).

Standard parameterisation is the common PyTorch-like form (multiplier 1, init std sigma/sqrt(fan_in))
with one global step size, its per-layer constants chosen so that it too equals NTK at n = n0.
Its readout's share of the kernel grows prop. n/n0, so with a step size chosen at n0 it diverges
at large width (the known SP instability); it is offered for comparison, not used by the study.

Imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ntk_bridge.errors import require

PARAMS = ("ntk", "standard", "mup")


@dataclass(frozen=True)
class Parameterization:
    """``name`` in PARAMS and the base width ``n0`` at which every parameterisation equals NTK."""

    name: str = "ntk"
    base_width: int = 64

    def __post_init__(self):
        require(self.name in PARAMS, f"unknown parameterisation {self.name!r}; choose one of {', '.join(PARAMS)}")
        require(isinstance(self.base_width, int) and not isinstance(self.base_width, bool) and self.base_width >= 1,
                f"base width must be an integer >= 1 (got {self.base_width!r})")

    @property
    def standard_form(self) -> bool:
        """Whether the layers use multiplier 1 and the scale in the init (standard) or NTK form."""
        return self.name == "standard"

    def describe(self) -> str:
        return self.name if self.name == "ntk" else f"{self.name} (base width {self.base_width})"


NTK = Parameterization()


@dataclass(frozen=True)
class LayerScale:
    """One dense layer's init std ``s`` (of ``w``; in standard form, of the effective weight)
    and SGD step factor ``r``; see the module table."""

    init_std: float
    lr: float


def layer_scales(param: Parameterization, depth: int, width: int, d: int, W_std: float,
                 readout_W_std: float) -> tuple[LayerScale, ...]:
    """The depth + 1 dense layers' (init std, step factor) of the module table, input first."""
    n, n0 = float(width), float(param.base_width)
    if param.name == "ntk":
        return tuple(LayerScale(1.0, 1.0) for _ in range(depth + 1))
    if param.name == "standard":
        fans = [d] + [width] * depth
        stds = [W_std] * depth + [readout_W_std]
        init = [sd / math.sqrt(f) for sd, f in zip(stds, fans)]
        lrs = [W_std ** 2 / d] + [W_std ** 2 / n0] * (depth - 1) + [readout_W_std ** 2 / n0]
        return tuple(LayerScale(s, r) for s, r in zip(init, lrs))
    body = [LayerScale(1.0, n / n0) for _ in range(depth)]
    return tuple(body + [LayerScale(math.sqrt(n0 / n), 1.0)])


def lr_factors(param: Parameterization, depth: int, width: int, d: int, W_std: float,
               readout_W_std: float) -> tuple[float, ...]:
    """Step factor per entry of the stax parameter list ``[(W1,b1), (), ..., (WL,bL), (), (Wr,br)]``
    (1.0 for the parameter-free activation entries)."""
    scales = layer_scales(param, depth, width, d, W_std, readout_W_std)
    out: list[float] = []
    for s in scales[:-1]:
        out += [s.lr, 1.0]
    return tuple(out + [scales[-1].lr])
