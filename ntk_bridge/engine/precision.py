"""The float64 context of the kernel side.

Float64 is asked for explicitly, never switched on for the whole process: the closed forms at
depth are ill-conditioned (docs/theory.md section 2), so every kernel-side function that computes
with JAX runs inside :func:`float64` (JAX's ``jax.enable_x64(True)`` context, which scopes the
``jax_enable_x64`` flag to the ``with`` block; ``jax.experimental.enable_x64`` was removed in JAX
0.9), usually through the :func:`in_float64` decorator. Arrays it returns are float64 numpy
arrays; the trainer, which never enters the context, computes in float32 whatever ran before it in
the same process.

neural-tangents is not imported here: the door to it is :func:`ntk_bridge.reference.compat.nt`,
and only :mod:`ntk_bridge.reference` imports it (tests/reference/test_runtime_without_nt.py).
"""

from __future__ import annotations

import functools


def float64():
    """A context in which JAX computes in float64 (``jax.enable_x64(True)``)."""
    import jax

    return jax.enable_x64(True)


def in_float64(fn):
    """Decorator: run ``fn`` inside :func:`float64`."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with float64():
            return fn(*args, **kwargs)

    return wrapped
