"""ntk_bridge: how close are multi-task learning and gradient-based meta-learning?

Python API (``import ntk_bridge as nb``; neural-tangents / scikit-learn conventions, numpy arrays
in, numpy arrays and pandas DataFrames out, every bad input refused with one :class:`BridgeError`)::

    import ntk_bridge as nb
    tasks = nb.task_set(train=(xq, yq, xs, ys), test=(xq_t, yq_t, xs_t, ys_t))   # (T, n, d) arrays
    g = nb.fc_kernels(nb.NetSpec(depth=4), tasks.points)                        # g.ntk, g.nngp: (n, n)
    f_mtl, f_anil = (nb.predict(m, tasks, g) for m in ("mtl-b", "anil"))        # (T_test, n_q, c)
    nb.d_rel(f_mtl, f_anil)
    frame = nb.run_depth_study(tasks, nb.NetSpec(depth=64), depths=[1, 4, 16, 64])  # a DataFrame

A user's own Gram enters as ``nb.gram(ntk=..., nngp=...)``, a user's own neural-tangents network as
``nb.kernels_from_kernel_fn(kernel_fn, x)`` (``stax = nb.neural_tangents().stax``: neural-tangents 0.6.5
imports on current JAX only through this shim, :mod:`ntk_bridge.reference.compat`) (or a function ``(depth, points) -> Kernels`` given to
``run_depth_study``). ``examples/`` has two runnable scripts.

The maths is ``docs/theory.md``: kernels (``kernels``), tasks (``tasks``), inner loop
(``inner_loop``), predictors (``predictors``), distances (``metrics``); the finite-width side lives
in ``finite``; the few-shot data layer in ``data`` (formats in ``docs/benchmarks.md``); the
trainers in ``train``. Importing the package is cheap: the names below load their modules (numpy,
pandas, JAX) on first use, and neural-tangents only for ``kernels_from_kernel_fn``.
"""

from __future__ import annotations

import importlib

from ntk_bridge.errors import BridgeError

# public name -> (module, attribute); loaded on first access (PEP 562)
_LAZY = {
    # kernels (neural-tangents names: .ntk = Theta, .nngp = K)
    "NetSpec": ("ntk_bridge.engine.spec", "NetSpec"),
    "Kernels": ("ntk_bridge.engine.spec", "Kernels"),
    "fc_kernels": ("ntk_bridge.api", "fc_kernels"),
    "depth_sweep": ("ntk_bridge.api", "depth_sweep"),
    "to_sphere": ("ntk_bridge.api", "to_sphere"),
    "empirical_kernels": ("ntk_bridge.api", "empirical_kernels"),
    "gram": ("ntk_bridge.api", "gram"),
    "kernels_from_kernel_fn": ("ntk_bridge.reference.stax", "kernels_from_kernel_fn"),
    "neural_tangents": ("ntk_bridge.reference.compat", "nt"),   # nb.neural_tangents(): the module, on current JAX
    # tasks
    "Task": ("ntk_bridge.closed_form.tasks", "Task"),
    "TaskSet": ("ntk_bridge.closed_form.tasks", "TaskSet"),
    "task_set": ("ntk_bridge.api", "task_set"),
    "FamilyConfig": ("ntk_bridge.closed_form.tasks", "FamilyConfig"),
    "make_tasks": ("ntk_bridge.api", "make_tasks"),
    # predictors
    "InnerLoop": ("ntk_bridge.closed_form.inner_loop", "InnerLoop"),
    "PredictorConfig": ("ntk_bridge.closed_form.predictors", "PredictorConfig"),
    "METHODS": ("ntk_bridge.closed_form.predictors", "METHODS"),
    "predict": ("ntk_bridge.api", "predict"),
    "adaptation_only": ("ntk_bridge.api", "adaptation_only"),
    # distances and errors
    "d_rel": ("ntk_bridge.api", "d_rel"),
    "d_tr": ("ntk_bridge.api", "d_tr"),
    "relative_error": ("ntk_bridge.api", "relative_error"),
    "mean_ci": ("ntk_bridge.api", "mean_ci"),
    # studies (DataFrames)
    "run_depth_study": ("ntk_bridge.api", "run_depth_study"),
    "depth_summary": ("ntk_bridge.api", "depth_summary"),
    "run_regime_study": ("ntk_bridge.api", "run_regime_study"),
    "regime_verdicts": ("ntk_bridge.api", "regime_verdicts"),
    "RegimeMapConfig": ("ntk_bridge.studies.regime_map", "RegimeMapConfig"),
    "run_width_study": ("ntk_bridge.api", "run_width_study"),
    "WidthSweepConfig": ("ntk_bridge.finite.sweep", "WidthSweepConfig"),
}

__all__ = ["BridgeError", *_LAZY]
__version__ = "0.2.0"   # the one source of the version (pyproject reads it)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ntk_bridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
