"""Finite fully connected networks in NTK parameterisation, as composable (init, apply) pairs.

The finite counterpart of :mod:`ntk_bridge.kernels` (whose kernels are these networks' infinite-width
limits), written in plain JAX after neural-tangents' ``stax``: each layer is a :class:`Layer` pair
``init(key, in_dim) -> (out_dim, params)`` and ``apply(params, x) -> y``, and :func:`serial`
composes them. The parameter layout is stax's, so a network built here and ``stax.serial`` of the
same layers initialise to the same numbers from the same key (tested against neural-tangents):

- :func:`dense` ``(W, b)`` with ``W`` (in, out) and ``b`` (1, out) (``None`` when ``b_std = 0``),
  ``W, b ~ N(0, 1)`` and ``y = (W_std / sqrt(in)) x W + b_std b`` (NTK parameterisation);
- :func:`activation` (ReLU ``max(x, 0)`` or ``erf``) with the empty parameters ``()``;
- :func:`serial` splits the key once per layer (``key, layer_key = split(key)``), as stax does.

For ``spec.depth = L`` the parameters are ``[(W_1, b_1), (), ..., (W_L, b_L), (), (W_r, b_r)]``:
``params[-1]`` is the readout (head), ``params[:-1]`` the body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ntk_bridge.errors import require
from ntk_bridge.kernels import NetSpec

Params = Any


@dataclass(frozen=True)
class Layer:
    """``init(key, in_dim) -> (out_dim, params)`` and ``apply(params, x (n, in)) -> (n, out)``."""

    init: Callable
    apply: Callable


def dense(out_dim: int, W_std: float, b_std: float = 0.0) -> Layer:
    """Dense layer, NTK parameterisation: ``y = (W_std / sqrt(in)) x W + b_std b``, W (in, out) and
    b (1, out) standard normal (b is ``None``, and absent from ``y``, when ``b_std = 0``)."""
    import jax

    def init(key, in_dim):
        k_w, k_b = jax.random.split(key)
        w = jax.random.normal(k_w, (in_dim, out_dim))
        b = jax.random.normal(k_b, (1, out_dim)) if b_std > 0 else None
        return out_dim, (w, b)

    def apply(params, x):
        w, b = params
        y = (W_std / math.sqrt(x.shape[-1])) * (x @ w)
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


def fc_layers(spec: NetSpec, width: int, out_dim: int = 1) -> list[Layer]:
    """``spec.depth`` x [dense(width, W_std, b_std), activation], then dense(out_dim) readout."""
    require(isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width >= 1,
            f"width must be an integer >= 1 (got {width!r})")
    hidden = []
    for _ in range(spec.depth):
        hidden += [dense(int(width), spec.W_std, spec.b_std), activation(spec.activation)]
    return hidden + [dense(int(out_dim), spec.readout_W_std, spec.readout_b_std)]


def fc_network(spec: NetSpec, width: int = 512, out_dim: int = 1) -> tuple[Callable, Callable]:
    """``(init_fn, apply_fn)`` of ``spec`` at ``width``: ``init_fn(key, (n, d)) -> (out_shape, params)``
    (stax's signature) and ``apply_fn(params, x (n, d)) -> (n, out_dim)``."""
    net = serial(*fc_layers(spec, width, out_dim))

    def init_fn(key, input_shape):
        out, params = net.init(key, int(input_shape[-1]))
        return tuple(input_shape[:-1]) + (out,), params

    def apply_fn(params, x, **kwargs):
        return net.apply(params, x)

    return init_fn, apply_fn
