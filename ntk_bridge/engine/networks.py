"""Finite fully connected networks (NTK parameterisation by default), as composable (init, apply) pairs.

The finite counterpart of :mod:`ntk_bridge.engine.fc` (whose kernels are these networks' infinite-width
limits), written in plain JAX after neural-tangents' ``stax``: each layer is a :class:`Layer` pair
``init(key, in_dim) -> (out_dim, params)`` and ``apply(params, x) -> y``, and :func:`serial`
composes them. The parameter layout is stax's, so a network built here and ``stax.serial`` of the
same layers initialise to the same numbers from the same key (tested against neural-tangents):

- :func:`dense` ``(W, b)`` with ``W`` (in, out) and ``b`` (1, out) (``None`` when ``b_std = 0``),
  ``W, b ~ N(0, 1)`` and ``y = (W_std / sqrt(in)) x W + b_std b`` (NTK parameterisation);
- :func:`activation` (ReLU ``max(x, 0)`` or ``erf``) with the empty parameters ``()``;
- :func:`serial` splits the key once per layer (``key, layer_key = split(key)``), as stax does.

Other parameterisations (standard, muP: :mod:`ntk_bridge.engine.parameterization`, whose table gives each
layer's init std and SGD step factor) change only the init std of ``W`` (``init_std``) and, for
standard, the form ``y = x W + b_std b`` with ``W ~ N(0, init_std^2)``; the default NTK network is
untouched (same draws, same numbers).

For ``spec.depth = L`` the parameters are ``[(W_1, b_1), (), ..., (W_L, b_L), (), (W_r, b_r)]``:
``params[-1]`` is the readout (head), ``params[:-1]`` the body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ntk_bridge.engine.parameterization import NTK, Parameterization, layer_scales
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import require

Params = Any


@dataclass(frozen=True)
class Layer:
    """``init(key, in_dim) -> (out_dim, params)`` and ``apply(params, x (n, in)) -> (n, out)``."""

    init: Callable
    apply: Callable


def dense(out_dim: int, W_std: float, b_std: float = 0.0, init_std: float = 1.0,
          standard: bool = False) -> Layer:
    """Dense layer, NTK parameterisation: ``y = (W_std / sqrt(in)) x W + b_std b``, W (in, out)
    ``~ N(0, init_std^2)`` (standard normal by default) and b (1, out) standard normal (b is
    ``None``, and absent from ``y``, when ``b_std = 0``). ``standard=True``: ``y = x W + b_std b``
    (multiplier 1; the caller puts ``W_std / sqrt(in)`` into ``init_std``)."""
    import jax

    def init(key, in_dim):
        k_w, k_b = jax.random.split(key)
        w = jax.random.normal(k_w, (in_dim, out_dim))
        if init_std != 1.0:
            w = init_std * w
        b = jax.random.normal(k_b, (1, out_dim)) if b_std > 0 else None
        return out_dim, (w, b)

    def apply(params, x):
        w, b = params
        y = x @ w if standard else (W_std / math.sqrt(x.shape[-1])) * (x @ w)
        return y if b is None else y + b_std * b

    return Layer(init, apply)


def activation(name: str) -> Layer:
    """Elementwise ``relu`` (``max(x, 0)``) or ``erf``; no parameters (``()``)."""
    import jax
    import jax.numpy as jnp

    fn = (lambda x: jnp.maximum(x, 0.0)) if name == "relu" else jax.scipy.special.erf
    return Layer(lambda key, in_dim: (in_dim, ()), lambda params, x: fn(x))


def serial(*layers: Layer) -> Layer:
    """The composition of ``layers``; parameters are a list, one entry per layer."""
    import jax

    def init(key, in_dim):
        params = []
        for layer in layers:
            key, layer_key = jax.random.split(key)
            in_dim, p = layer.init(layer_key, in_dim)
            params.append(p)
        return in_dim, params

    def apply(params, x):
        for layer, p in zip(layers, params):
            x = layer.apply(p, x)
        return x

    return Layer(init, apply)


def fc_layers(spec: NetSpec, width: int, out_dim: int = 1, param: Parameterization = NTK,
              d: int | None = None) -> list[Layer]:
    """``spec.depth`` x [dense(width, W_std, b_std), activation], then dense(out_dim) readout, in
    ``param`` (NTK by default; the standard form needs the input dimension ``d``)."""
    require(isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width >= 1,
            f"width must be an integer >= 1 (got {width!r})")
    require(not param.standard_form or d is not None, "the standard parameterisation needs the input dimension d")
    scales = layer_scales(param, spec.depth, int(width), int(d or 1), spec.W_std, spec.readout_W_std)
    std = param.standard_form
    hidden = []
    for s in scales[:-1]:
        hidden += [dense(int(width), spec.W_std, spec.b_std, s.init_std, std), activation(spec.activation)]
    return hidden + [dense(int(out_dim), spec.readout_W_std, spec.readout_b_std, scales[-1].init_std, std)]


def fc_network(spec: NetSpec, width: int = 512, out_dim: int = 1, param: Parameterization = NTK,
               d: int | None = None) -> tuple[Callable, Callable]:
    """``(init_fn, apply_fn)`` of ``spec`` at ``width`` in ``param``: ``init_fn(key, (n, d)) ->
    (out_shape, params)`` (stax's signature) and ``apply_fn(params, x (n, d)) -> (n, out_dim)``."""
    net = serial(*fc_layers(spec, width, out_dim, param, d))

    def init_fn(key, input_shape):
        out, params = net.init(key, int(input_shape[-1]))
        return tuple(input_shape[:-1]) + (out,), params

    def apply_fn(params, x, **kwargs):
        return net.apply(params, x)

    return init_fn, apply_fn


def fc_features(spec: NetSpec, width: int, param: Parameterization = NTK, d: int | None = None) -> Callable:
    """``features(params, x (n, d)) -> [h_1, ..., h_L]``: each hidden layer's post-activation
    outputs (n, width) of the network :func:`fc_network` builds with the same arguments (the
    readout left out); for coordinate checks and learned-representation scores."""
    layers = fc_layers(spec, width, 1, param, d)[:-1]

    def features(params, x):
        out = []
        for layer, p in zip(layers, params):
            x = layer.apply(p, x)
            if p == ():
                out.append(x)
        return out

    return features
