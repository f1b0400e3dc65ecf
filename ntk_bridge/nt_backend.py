"""The one place that imports neural-tangents, and the float64 context of the kernel side.

neural-tangents imports TensorFlow on load (several seconds), so nothing else in the package
imports it: code that needs a ``stax`` network or an empirical kernel goes through here, and
only when it is called.

Float64 is asked for explicitly, never switched on for the whole process: the closed forms at
depth are ill-conditioned (docs/theory.md section 2), so every kernel-side function that computes
with JAX runs inside :func:`float64` (``jax.experimental.enable_x64``), usually through the
:func:`in_float64` decorator. Arrays it returns are float64 numpy arrays; the trainer, which
never enters the context, computes in float32 whatever ran before it in the same process.
"""

from __future__ import annotations

import functools
import os
from functools import lru_cache

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@lru_cache(maxsize=None)
def nt():
    """Return the ``neural_tangents`` module (imported once)."""
    try:
        import neural_tangents
    except AttributeError as err:  # jax.core.Jaxpr moved in JAX 0.6
        raise ImportError(
            f"neural-tangents 0.6.5 needs JAX < 0.6 ({err}); reinstall with "
            "`pip install -e .` to get the pinned jax==0.5.3") from err
    return neural_tangents


def stax():
    """Return ``neural_tangents.stax``."""
    return nt().stax


def jacobian_contraction():
    """The empirical-NTK implementation that works with JAX 0.5 (STRUCTURED_DERIVATIVES fails)."""
    return nt().NtkImplementation.JACOBIAN_CONTRACTION


def float64():
    """A context in which JAX computes in float64 (``jax.experimental.enable_x64()``)."""
    from jax.experimental import enable_x64

    return enable_x64()


def in_float64(fn):
    """Decorator: run ``fn`` inside :func:`float64`."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with float64():
            return fn(*args, **kwargs)

    return wrapped
