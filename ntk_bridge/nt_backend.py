"""The one place that imports neural-tangents.

neural-tangents imports TensorFlow on load (several seconds), so nothing else in the package
imports it: code that needs a ``stax`` network or an empirical kernel goes through here, and
only when it is called. Float64 is switched on for JAX the first time this module loads,
because the closed forms at depth are ill-conditioned (docs/theory.md section 2).
"""

from __future__ import annotations

import os
from functools import lru_cache

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@lru_cache(maxsize=None)
def nt():
    """Return the ``neural_tangents`` module (imported once, float64 enabled)."""
    import jax

    jax.config.update("jax_enable_x64", True)
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
