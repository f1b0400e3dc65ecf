"""neural-tangents 0.6.5 on current JAX: the names it needs that JAX moved or removed.

neural-tangents 0.6.5 (December 2023) is the last release; it was written for JAX 0.4 and stops
importing on JAX >= 0.6 only through the names listed in :data:`SUPPLIED`, plus its
``neural_tangents.experimental`` module, which imports TensorFlow (through tf2jax) and which this
project never uses. :func:`import_neural_tangents` supplies each missing name (and nothing that
JAX still has), then imports neural-tangents. With these supplied, every neural-tangents function
the project's tests use (stax Dense/Relu/Erf/Conv/GlobalAvgPool ``kernel_fn``, init/apply,
``empirical_ntk_fn`` with JACOBIAN_CONTRACTION, ``linearize``, ``batch``) gives the numbers it
gave on JAX 0.5.3 (tests/reference/test_engine_reference.py compares them with the project's own engine).

neural-tangents is installed without its declared dependencies (``pip install --no-deps
neural-tangents==0.6.5``: it declares tensorflow and tf2jax, 1.9 GB, for ``experimental`` only),
so TensorFlow is neither installed nor imported. If a future JAX removes another name that
neural-tangents needs, the import fails with one :class:`~ntk_bridge.errors.BridgeError` line
naming the JAX version and the missing name.
"""

from __future__ import annotations

import sys
import types
from functools import lru_cache

from ntk_bridge.errors import BridgeError

NT_VERSION = "0.6.5"
INSTALL_HINT = f"pip install --no-deps neural-tangents=={NT_VERSION} frozendict"

#: (module, name, why): every symbol this module may supply, and why it is missing.
SUPPLIED = (
    ("jax.core", "Jaxpr", "moved to jax.extend.core in JAX 0.6"),
    ("jax.core", "JaxprEqn", "moved to jax.extend.core in JAX 0.6"),
    ("jax.core", "Literal", "moved to jax.extend.core in JAX 0.6"),
    ("jax.core", "Var", "moved to jax.extend.core in JAX 0.6"),
    ("jax.core", "Primitive", "moved to jax.extend.core in JAX 0.6"),
    ("jax.util", "safe_map", "module jax.util removed in JAX 0.8"),
    ("jax.util", "safe_zip", "module jax.util removed in JAX 0.8"),
    ("jax.interpreters.ad", "zeros_like_p", "primitive removed in JAX 0.9"),
    ("neural_tangents.experimental", "(module)", "imports TensorFlow; never used here"),
)


def _same_length(name: str, iterables) -> list[list]:
    """The iterables as lists; ValueError if their lengths differ (what jax.util's safe_* check)."""
    lists = [list(it) for it in iterables]
    if len({len(a) for a in lists}) > 1:
        raise ValueError(f"{name}: lengths differ {[len(a) for a in lists]}")
    return lists


def safe_map(fn, *iterables):
    """``list(map(fn, *iterables))`` that refuses iterables of different lengths (jax.util's)."""
    return list(map(fn, *_same_length("safe_map", iterables)))


def safe_zip(*iterables):
    """``list(zip(*iterables))`` that refuses iterables of different lengths (jax.util's)."""
    return list(zip(*_same_length("safe_zip", iterables)))


def _supply_core() -> None:
    """``jax.core.{Jaxpr, JaxprEqn, Literal, Var, Primitive}`` from ``jax.extend.core``."""
    import jax.core
    import jax.extend.core

    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        if not hasattr(jax.core, name):
            setattr(jax.core, name, getattr(jax.extend.core, name))


def _supply_util() -> None:
    """A ``jax.util`` module with :func:`safe_map` and :func:`safe_zip` where JAX has none."""
    try:
        import jax.util  # noqa: F401
    except ImportError:
        import jax

        util = types.ModuleType("jax.util", "supplied by ntk_bridge.reference.compat")
        util.safe_map, util.safe_zip = safe_map, safe_zip
        sys.modules["jax.util"] = util
        jax.util = util


def _supply_zeros_like() -> None:
    """``jax.interpreters.ad.zeros_like_p``: neural-tangents only uses it as a dictionary key of
    its structure rules; JAX >= 0.9 never emits the primitive, so a fresh one named
    ``zeros_like`` is a key that no traced program matches, which is what JAX itself now does."""
    import jax.extend.core
    import jax.interpreters.ad as ad

    if not hasattr(ad, "zeros_like_p"):
        ad.zeros_like_p = jax.extend.core.Primitive("zeros_like")


def _stub_experimental() -> None:
    """An empty ``neural_tangents.experimental`` so that the package's ``__init__`` does not load
    TensorFlow; its one function (``stax_from_tf``-style TF conversion) is not used here."""
    sys.modules.setdefault("neural_tangents.experimental",
                           types.ModuleType("neural_tangents.experimental",
                                            "stub: TensorFlow-only, not used (ntk_bridge.reference.compat)"))


@lru_cache(maxsize=None)
def import_neural_tangents():
    """Supply the missing names (:data:`SUPPLIED`) and return the ``neural_tangents`` module.

    Raises :class:`BridgeError` in one line when neural-tangents is not installed, or when this
    JAX lacks something else that it needs (naming the JAX version and the name)."""
    import jax

    _supply_core()
    _supply_util()
    _supply_zeros_like()
    _stub_experimental()
    try:
        import neural_tangents
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "neural_tangents":
            raise BridgeError(f"neural-tangents is not installed; it is needed only as the reference "
                              f"and for your own stax networks: {INSTALL_HINT}") from None
        raise BridgeError(_missing_message(jax.__version__, err)) from None
    except (ImportError, AttributeError) as err:
        raise BridgeError(_missing_message(jax.__version__, err)) from None
    return neural_tangents


def _missing_message(jax_version: str, err: Exception) -> str:
    """One line naming the JAX version and what neural-tangents could not find."""
    name = getattr(err, "name", None) or str(err)
    return (f"neural-tangents {NT_VERSION} does not import on JAX {jax_version}: {name} is missing "
            f"({type(err).__name__}: {err}); add it to ntk_bridge/reference/compat.py's SUPPLIED list or "
            "use the JAX version the README names")


def nt():
    """Return the ``neural_tangents`` module (imported once, through :mod:`ntk_bridge.reference.compat`).

    Raises :class:`~ntk_bridge.errors.BridgeError` in one line if it is missing or does not import."""
    from ntk_bridge.reference.compat import import_neural_tangents

    return import_neural_tangents()


def stax():
    """Return ``neural_tangents.stax``."""
    return nt().stax


def jacobian_contraction():
    """neural-tangents' JACOBIAN_CONTRACTION empirical-NTK implementation (the reference's choice)."""
    return nt().NtkImplementation.JACOBIAN_CONTRACTION
