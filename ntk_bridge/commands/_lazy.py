"""Deferred imports for building the parser: ``--help`` without pandas, scipy or JAX.

The commands take their flags' defaults from the study configs (stated once, in the dataclasses),
and some study modules import pandas at module level for their DataFrame results. :func:`defer`
puts a stand-in for each such package into ``sys.modules``: ``import pandas as pd`` binds the
stand-in at no cost, and the first attribute it is asked for (``pd.DataFrame``, or a submodule's
``__path__``) imports the real package, which then replaces the stand-in in ``sys.modules`` and
fills the stand-in's namespace, so later look-ups are direct. The package's code thus runs only
when a command computes; ``--help`` and flag errors never run it. scipy and JAX need no stand-in:
nothing on the parser's path imports them at module level (tests/commands/test_help_imports.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = ("pandas",)


class _StandIn(types.ModuleType):
    """A module whose first missing attribute imports the real module of the same name."""

    def __getattr__(self, attr: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """A stand-in for each top-level package in ``names`` that is installed and not imported yet."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:                      # not installed: the real import fails where it is used
            continue
        stand_in = _StandIn(name)
        stand_in.__spec__ = spec
        sys.modules[name] = stand_in


def loaded(name: str) -> bool:
    """Whether the package ``name`` has actually been imported (a stand-in never used has not)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, _StandIn)
