"""The public API for scripts and notebooks: ``import ntk_bridge as nb``.

Conventions are neural-tangents' and scikit-learn's: kernels are named ``ntk`` (Theta) and
``nngp`` (K, the readout's share of Theta); inputs are plain numpy arrays with the number of points
first; studies return pandas DataFrames (one row per depth x pair x draw, tidy). Every input is
checked here and refused with one :class:`~ntk_bridge.errors.BridgeError` line naming the problem and
the fix (never an AttributeError deep inside).

Shapes (T tasks, n_q query and n_s support points per task, d input dimensions, c outputs):

- tasks: :func:`task_set` from arrays x_query (T, n_q, d), y_query (T, n_q) or (T, n_q, c),
  x_support (T, n_s, d), y_support (T, n_s) or (T, n_s, c), one tuple for the training tasks and
  one for the test tasks; ``tasks.points`` (n, d) lays out every point, n = sum of all tasks' n_q + n_s;
- kernels on those points: :func:`ntk_bridge.engine.fc.fc_kernels` (one depth) or
  :func:`ntk_bridge.engine.fc.depth_sweep` (every depth in one pass) of a :class:`NetSpec`, a user's own
  neural-tangents ``stax`` kernel_fn through :func:`ntk_bridge.reference.stax.kernels_from_kernel_fn`,
  or a user's own Gram matrices through :func:`gram` (``ntk`` and ``nngp``, each (n, n));
- :func:`predict` / :func:`adaptation_only`: test-query predictions (T_test, n_q, c);
- :func:`ntk_bridge.closed_form.distances.d_rel`, :func:`ntk_bridge.closed_form.distances.d_tr`: distances between predictions;
- :func:`run_depth_study`, :func:`run_regime_study`, :func:`run_width_study`: the studies as DataFrames.

The formulas are docs/theory.md's; this module adds no mathematics, only the front door.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ntk_bridge.closed_form.predictors import METHODS, PAIRS, PredictorConfig
from ntk_bridge.closed_form.tasks import Task, TaskSet
from ntk_bridge.engine import fc as _fc
from ntk_bridge.engine import spec as _spec
from ntk_bridge.engine._checks import real_array, require_memory
from ntk_bridge.engine.spec import SPHERE_RTOL, Kernels, NetSpec
from ntk_bridge.errors import BridgeError, require

# (depth, points (n, d)) -> Kernels on those points: how a user's own kernel enters run_depth_study
KernelFamily = Callable[[int, np.ndarray], Kernels]


# ----------------------------------------------------------------------------- tasks

def _task_arrays(arrays, group: str) -> tuple[np.ndarray, ...]:
    """Four arrays (T, n_q, d), (T, n_q[, c]), (T, n_s, d), (T, n_s[, c]) as float64, checked."""
    require(isinstance(arrays, (tuple, list)) and len(arrays) == 4,
            f"{group} must be a tuple (x_query, y_query, x_support, y_support) of arrays; "
            f"got {type(arrays).__name__}{'' if not hasattr(arrays, '__len__') else f' of length {len(arrays)}'}")
    names = ("x_query", "y_query", "x_support", "y_support")
    out = []
    for name, a in zip(names, arrays):
        a = real_array(a, f"{group} {name}")
        if name.startswith("y") and a.ndim == 2:
            a = a[..., None]
        require(a.ndim == 3, f"{group} {name} must have shape (tasks, points, {'d' if name[0] == 'x' else 'c'})"
                             f"{'' if name[0] == 'x' else ' or (tasks, points)'}; got {a.shape}")
        out.append(a)
    n_tasks = {a.shape[0] for a in out}
    require(len(n_tasks) == 1, f"{group} arrays disagree on the number of tasks (first axis): "
                               f"{[a.shape[0] for a in out]}")
    return tuple(out)


def task_set(train, test) -> TaskSet:
    """A :class:`TaskSet` from plain arrays.

    ``train`` and ``test`` are each a tuple ``(x_query, y_query, x_support, y_support)`` with shapes
    (T, n_q, d), (T, n_q) or (T, n_q, c), (T, n_s, d), (T, n_s) or (T, n_s, c); or a list of
    :class:`Task`. Inputs must lie on the sphere of radius sqrt(d) for the engine's kernels
    (:func:`ntk_bridge.engine.spec.to_sphere` projects them).
    """
    groups = []
    for group, value in (("train", train), ("test", test)):
        if isinstance(value, (list, tuple)) and value and all(isinstance(t, Task) for t in value):
            groups.append(tuple(value))
            continue
        xq, yq, xs, ys = _task_arrays(value, group)
        groups.append(tuple(Task(xq[i], yq[i], xs[i], ys[i]) for i in range(xq.shape[0])))
    return TaskSet(groups[0], groups[1])


def as_task_set(tasks, name: str = "tasks") -> TaskSet:
    """``tasks`` if it is a :class:`TaskSet`; otherwise one BridgeError saying how to make one."""
    if isinstance(tasks, TaskSet):
        return tasks
    if isinstance(tasks, (list, tuple)) and tasks and all(isinstance(t, Task) for t in tasks):
        raise BridgeError(f"{name} is a {type(tasks).__name__} of {len(tasks)} Task objects but a TaskSet is "
                          "expected (training and test tasks); use ntk_bridge.TaskSet(train=..., test=...) or "
                          "ntk_bridge.task_set(train=(xq, yq, xs, ys), test=(xq, yq, xs, ys))")
    raise BridgeError(f"{name} must be a TaskSet (got {type(tasks).__name__}); build one with "
                      "ntk_bridge.task_set(train=(xq, yq, xs, ys), test=(xq, yq, xs, ys))")


def make_tasks(config, seed: int) -> TaskSet:
    """Synthetic tasks of a :class:`FamilyConfig` (inputs on the sphere), seeded by ``seed``
    (:func:`ntk_bridge.closed_form.tasks.make_tasks`)."""
    from ntk_bridge.closed_form.tasks import FamilyConfig
    from ntk_bridge.closed_form.tasks import make_tasks as _make

    require(isinstance(config, FamilyConfig), f"config must be a FamilyConfig (got {type(config).__name__}); "
                                              "e.g. nb.FamilyConfig(family='teacher', d=16)")
    return _make(config, _check_int(seed, "seed", 0))


def _check_int(value, name: str, least: int) -> int:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= least,
            f"{name} must be an integer >= {least} (got {value!r})")
    return int(value)


def _require_sphere(tasks: TaskSet) -> None:
    """The engine's kernels need every input on the sphere x.x/d = 1; say so in the user's terms."""
    x = tasks.points
    sq = np.sum(x * x, axis=-1) / x.shape[-1]
    off = np.abs(sq - 1.0) > SPHERE_RTOL
    if off.any():
        worst = int(np.argmax(np.abs(sq - 1.0)))
        raise BridgeError(f"the tasks' inputs (x_query, x_support) are off the sphere of radius sqrt(d) "
                          f"({int(off.sum())} of {len(sq)} points; one has x.x/d = {sq[worst]:.4g}, expected 1), "
                          "which the NetSpec kernels need: project each x with nb.to_sphere(x) before "
                          "nb.task_set, or pass your own kernels")


# ----------------------------------------------------------------------------- kernels

def _check_spec(spec) -> NetSpec:
    require(isinstance(spec, NetSpec), f"spec must be a NetSpec (got {type(spec).__name__}); "
                                       "e.g. nb.NetSpec(depth=4, activation='relu')")
    return spec


def to_sphere(x) -> np.ndarray:
    """Rows of ``x`` (n, d) projected onto the sphere of radius sqrt(d) (``x . x / d = 1``), the
    inputs every NetSpec kernel needs (:func:`ntk_bridge.engine.spec.to_sphere`)."""
    return _spec.to_sphere(x)


def fc_kernels(spec: NetSpec, x1, x2=None, normalize: bool = False) -> Kernels:
    """(Theta, K) of the infinite-width FC network ``spec`` between x1 (n1, d) and x2 (n2, d)
    (:func:`ntk_bridge.engine.fc.fc_kernels`); inputs on the sphere (``nb.to_sphere``)."""
    return _fc.fc_kernels(_check_spec(spec), x1, x2, normalize=bool(normalize))


def depth_sweep(spec: NetSpec, x1, x2=None, depths: Sequence[int] | None = None,
                normalize: bool = False) -> dict[int, Kernels]:
    """{depth: Kernels} for every depth in ``depths`` (default 1..spec.depth) in one pass
    (:func:`ntk_bridge.engine.fc.depth_sweep`)."""
    return _fc.depth_sweep(_check_spec(spec), x1, x2, depths=None if depths is None else _check_depths(depths),
                           normalize=bool(normalize))


def empirical_kernels(spec: NetSpec, width: int, seed: int, x1, x2=None) -> Kernels:
    """Empirical (Theta, K) of a width-``width`` network at initialisation from PRNGKey(seed)
    (:func:`ntk_bridge.engine.empirical.empirical_kernels`). Memory: the Jacobians (n1 + n2) x
    parameters are held at once, refused before allocation when they cannot fit."""
    from ntk_bridge.engine.empirical import empirical_kernels as _empirical

    spec = _check_spec(spec)
    width, seed = _check_int(width, "width", 1), _check_int(seed, "seed", 0)
    a, b = _spec.check_inputs(x1, x2)
    d = a.shape[1]
    params = d * width + (spec.depth - 1) * width * width + (spec.depth + 1) * width + width + 1
    require_memory(8 * ((len(a) + len(b)) * params + 2 * len(a) * len(b)),
                   f"the Jacobians of {len(a)} + {len(b)} points x {params} parameters (width {width}, depth {spec.depth})",
                   "use fewer points or a smaller width")
    return _empirical(spec, width, seed, a, None if x2 is None else b)


# ----------------------------------------------------------------------------- kernels

def gram(ntk, nngp) -> Kernels:
    """A user's own Gram matrices as :class:`Kernels`: ``ntk`` = Theta and ``nngp`` = K, each (n, n).

    For a network with a linear readout, K is the readout's share of Theta (the NNGP kernel), so
    Theta - K (the body's share) must be positive semi-definite; this is not checked here (the
    predictors refuse a Gram whose solve fails). Both must be finite, square, symmetric and of one shape.
    """
    out = {}
    for name, m in (("ntk", ntk), ("nngp", nngp)):
        m = real_array(m, name)
        require(m.ndim == 2 and m.shape[0] == m.shape[1] and m.shape[0] >= 1,
                f"{name} must be a square matrix (n, n) over tasks.points; got shape {m.shape}")
        scale = max(float(np.max(np.abs(m))), 1e-300)
        require(float(np.max(np.abs(m - m.T))) <= 1e-8 * scale,
                f"{name} is not symmetric (max |M - M^T| = {np.max(np.abs(m - m.T)):.3g}); "
                "pass the Gram of the points with themselves")
        out[name] = m
    require(out["ntk"].shape == out["nngp"].shape,
            f"ntk {out['ntk'].shape} and nngp {out['nngp'].shape} must have the same shape")
    return Kernels(theta=out["ntk"], k=out["nngp"])


def _as_kernels(value, n: int, name: str) -> Kernels:
    require(isinstance(value, Kernels),
            f"{name} must be a Kernels (got {type(value).__name__}); wrap your own matrices with "
            "ntk_bridge.gram(ntk=..., nngp=...)")
    for attr in ("theta", "k"):
        shape = np.shape(getattr(value, attr))
        require(shape == (n, n), f"{name}.{attr} has shape {shape} but the task set has {n} points; "
                                 "compute the kernels on tasks.points")
    return value


def _check_method(method: str) -> None:
    require(isinstance(method, str) and method in METHODS,
            f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _check_config(config) -> PredictorConfig:
    config = PredictorConfig() if config is None else config
    require(isinstance(config, PredictorConfig),
            f"config must be a PredictorConfig (got {type(config).__name__}); e.g. "
            "ntk_bridge.PredictorConfig(inner=ntk_bridge.InnerLoop('flow', tau=1.0), outer_time=math.inf)")
    return config


# ----------------------------------------------------------------------------- predictors

def predict(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig | None = None,
            f0: np.ndarray | None = None) -> np.ndarray:
    """Closed-form test-query predictions of ``method``, shape (T_test, n_q, c).

    ``method`` is one of mtl-a, mtl-b, anil, maml, head-only, ntk (docs/theory.md 3-5);
    ``gram`` holds Theta and K over ``tasks.points`` (n, n); ``f0`` (n, c), optional, the
    network's outputs at initialisation (0 when omitted).
    """
    from ntk_bridge.closed_form import predictors

    tasks = as_task_set(tasks)
    _check_method(method)
    f0 = None if f0 is None else real_array(f0, "f0")
    return predictors.predict(method, tasks, _as_kernels(gram, len(tasks.points), "gram"), _check_config(config), f0)


def adaptation_only(method: str, tasks: TaskSet, gram: Kernels, config: PredictorConfig | None = None) -> np.ndarray:
    """The t = 0 predictor K_in(X, X') T' Y' (Theta for maml, K otherwise), (T_test, n_q, c): what
    ``method`` predicts from the test supports alone, the denominator of d_tr."""
    from ntk_bridge.closed_form import predictors

    tasks = as_task_set(tasks)
    _check_method(method)
    return predictors.adaptation_only(method, tasks, _as_kernels(gram, len(tasks.points), "gram"),
                                      _check_config(config))


# ----------------------------------------------------------------------------- distances

def _predictions(*named) -> list[np.ndarray]:
    arrays = [real_array(a, name) for name, a in named]
    shapes = {a.shape for a in arrays}
    require(len(shapes) == 1, "predictions must have the same shape to be compared; got "
            + ", ".join(f"{name} {a.shape}" for (name, _), a in zip(named, arrays)))
    return arrays


def _nonzero(a: np.ndarray, name: str, formula: str) -> None:
    require(bool(np.any(a != 0)), f"{name} is all zeros, so {formula} has a zero denominator")


def d_rel(f_a, f_b) -> float:
    """d_rel = ||F_a - F_b|| / ||F_b|| (:func:`ntk_bridge.closed_form.distances.d_rel`)."""
    from ntk_bridge.closed_form import distances

    a, b = _predictions(("f_a", f_a), ("f_b", f_b))
    _nonzero(b, "f_b", "d_rel = ||f_a - f_b|| / ||f_b||")
    return distances.d_rel(a, b)


def d_tr(f_a, f_b, f_b_adapt_only) -> float:
    """d_tr = ||F_a - F_b|| / ||F_b - F_b(t=0)|| (:func:`ntk_bridge.closed_form.distances.d_tr`)."""
    from ntk_bridge.closed_form import distances

    a, b, c = _predictions(("f_a", f_a), ("f_b", f_b), ("f_b_adapt_only", f_b_adapt_only))
    _nonzero(b - c, "f_b - f_b_adapt_only", "d_tr = ||f_a - f_b|| / ||f_b - f_b_adapt_only||")
    return distances.d_tr(a, b, c)


def relative_error(pred, target) -> float:
    """||F - Y||^2 / ||Y||^2 (:func:`ntk_bridge.closed_form.distances.relative_error`)."""
    from ntk_bridge.closed_form import distances

    p, t = _predictions(("pred", pred), ("target", target))
    _nonzero(t, "target", "||pred - target||^2 / ||target||^2")
    return distances.relative_error(p, t)


def mean_ci(values, ddof: int = 1) -> tuple[float, float]:
    """(mean, 95% t-interval half-width) of finite ``values`` (:func:`ntk_bridge.stats.mean_ci`);
    non-finite values are refused (``ntk_bridge.stats.finite_mean_ci`` counts and drops them)."""
    from ntk_bridge import stats

    v = real_array(values, "values", "drop them, or use ntk_bridge.stats.finite_mean_ci (it counts and drops them)")
    require(v.ndim == 1 and v.size >= 1, f"values must be a non-empty 1-D list of numbers; got shape {v.shape}")
    return stats.mean_ci(v, ddof=_check_int(ddof, "ddof", 0))


# ----------------------------------------------------------------------------- the depth study

def _task_draws(tasks) -> list[TaskSet]:
    if isinstance(tasks, TaskSet):
        return [tasks]
    require(isinstance(tasks, (list, tuple)) and len(tasks) >= 1 and all(isinstance(t, TaskSet) for t in tasks),
            "tasks must be a TaskSet or a non-empty list of TaskSets (one per draw)"
            + ("; got Task objects: group them with ntk_bridge.task_set" if isinstance(tasks, (list, tuple))
               and any(isinstance(t, Task) for t in tasks) else f"; got {type(tasks).__name__}"))
    return list(tasks)


def _check_depths(depths) -> tuple[int, ...]:
    depths = tuple(depths)
    require(len(depths) >= 1 and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                                     for d in depths),
            f"depths must be a non-empty list of integers >= 1 (got {list(depths)})")
    return tuple(sorted(set(int(d) for d in depths)))


def _kernels_by_depth(kernels, tasks: TaskSet, depths) -> dict[int, Kernels]:
    """{depth: Kernels on tasks.points} from a NetSpec, a mapping or a callable (depth, points)."""
    n = len(tasks.points)
    if isinstance(kernels, NetSpec):
        depths = _check_depths(depths if depths is not None else range(1, kernels.depth + 1))
        _require_sphere(tasks)
        return _fc.depth_sweep(kernels, tasks.points, depths=depths)
    if isinstance(kernels, Mapping):
        chosen = _check_depths(kernels.keys() if depths is None else depths)
        missing = [d for d in chosen if d not in kernels]
        require(not missing, f"kernels has no entry for depths {missing}; give one Kernels per depth")
        return {d: _as_kernels(kernels[d], n, f"kernels[{d}]") for d in chosen}
    require(callable(kernels), "kernels must be a NetSpec, a mapping {depth: Kernels} or a function "
                               f"(depth, points) -> Kernels; got {type(kernels).__name__}")
    require(depths is not None, "with a kernel function, give the depths to study (depths=[1, 2, 4, ...])")
    return {d: _as_kernels(kernels(d, tasks.points), n, f"kernels({d}, points)") for d in _check_depths(depths)}


def run_depth_study(tasks, kernels=NetSpec(depth=16), depths: Sequence[int] | None = None,
                config: PredictorConfig | None = None,
                pairs: Sequence[tuple[str, str]] = PAIRS) -> pd.DataFrame:
    """MTL vs GBML distances and test errors at every depth, as a tidy DataFrame.

    ``tasks``: a TaskSet, or a list of TaskSets (one per draw). ``kernels``: a :class:`NetSpec`
    (the engine's kernels at ``depths``, default 1..spec.depth, in one pass per draw); a function
    ``(depth, points (n, d)) -> Kernels`` (e.g. a user's stax network through
    :func:`ntk_bridge.reference.stax.kernels_from_kernel_fn`); or, for one TaskSet, a mapping
    ``{depth: Kernels}`` already on ``tasks.points``. ``pairs``: (method, anil|maml) pairs.

    Returns one row per depth x pair x draw with columns depth, pair, draw, d_rel, d_tr, method_a,
    method_b, err_a, err_b, err_head_only (errors are ||F - Y||^2 / ||Y||^2 on the test queries).
    :func:`ntk_bridge.studies.depth_sweep.summarize` fits the log-log rates of such a frame.
    """
    from ntk_bridge.studies.depth_sweep import DepthStudyConfig, rows_from_kernels

    draws = _task_draws(tasks)
    require(not isinstance(kernels, Mapping) or len(draws) == 1,
            "a mapping {depth: Kernels} holds the kernels of one TaskSet; for several draws pass a NetSpec "
            "or a function (depth, points) -> Kernels")
    pairs = tuple(tuple(p) for p in pairs)
    for p in pairs:
        require(len(p) == 2 and p[0] in METHODS and p[1] in ("anil", "maml"),
                f"a pair is (method, anil|maml) with method in {', '.join(METHODS)}; got {p!r}")
    config = _check_config(config)
    rows = []
    for draw, ts in enumerate(draws):
        by_depth = _kernels_by_depth(kernels, ts, depths)
        study = DepthStudyConfig(depths=tuple(by_depth), draws=1, predictor=config, pairs=pairs)
        rows += rows_from_kernels(study, ts, by_depth, draw)
    return pd.DataFrame(rows)


def depth_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair: mean distances at the smallest and largest depth and the fitted log-log rates
    (:func:`ntk_bridge.studies.depth_sweep.summarize`)."""
    from ntk_bridge.studies.depth_sweep import summarize

    require(isinstance(frame, pd.DataFrame) and {"pair", "depth", "d_rel", "d_tr"} <= set(frame.columns),
            "depth_summary needs the DataFrame returned by ntk_bridge.run_depth_study")
    return summarize(frame)


# ----------------------------------------------------------------------------- regime and width studies

def run_regime_study(config=None, cache: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """The regime map (network x inner-loop scale x outer time, every depth) as a tidy DataFrame.

    ``config``: a :class:`ntk_bridge.studies.regime_map.RegimeMapConfig` (default: its ``QUICK`` grid, seconds);
    ``cache``: a folder for the per-cell results (resumable; default a temporary folder). One row
    per cell x depth x pair x draw (columns cell, net, inner, outer_time, depth, pair, draw, d_rel,
    d_tr, err_a, err_b, err_head_only, status). :func:`regime_verdicts` says where MTL and GBML meet.
    """
    from ntk_bridge.studies.regime_map import QUICK, RegimeMapConfig, compute

    config = QUICK if config is None else config
    require(isinstance(config, RegimeMapConfig), f"config must be a RegimeMapConfig (got {type(config).__name__})")
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="ntk_bridge_regime_") as tmp:
            return compute(config, Path(tmp), progress=progress)
    return compute(config, Path(cache), progress=progress)


def regime_verdicts(frame: pd.DataFrame, deep_from: int = 64) -> pd.DataFrame:
    """Per cell and pair: the fitted deep rates and gains (rates over depths >= ``deep_from``),
    merged with the verdict on whether MTL-B and GBML meet while both beat head-only."""
    from ntk_bridge.studies.regime_map import summarize_cells, verdicts
    from ntk_bridge.studies.regime_report import verdict_frame

    require(isinstance(frame, pd.DataFrame) and {"cell", "pair", "depth", "draw"} <= set(frame.columns),
            "regime_verdicts needs the DataFrame returned by ntk_bridge.run_regime_study")
    require(sum(d >= deep_from for d in frame["depth"].unique()) >= 2,
            f"at least two depths must be >= deep_from = {deep_from} to fit a deep rate; lower deep_from")
    summary = summarize_cells(frame, deep_from)
    return summary.merge(verdict_frame(verdicts(summary)), on=["cell", "pair"], how="left")


def run_width_study(config=None, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finite networks trained by gradient descent vs their closed forms, over widths.

    ``config``: a :class:`ntk_bridge.finite.sweep.WidthSweepConfig` (widths, seeds, network, tasks,
    methods; its default is minutes of CPU). Returns ``(errors, pairs)``: one row per width x seed x
    method (relative error of the trained network to the closed form) and one per width x seed x pair
    (network and closed-form distances); :func:`ntk_bridge.finite.sweep.slope_table` fits the slopes.
    """
    from ntk_bridge.finite.sweep import WidthSweepConfig, check_cost, run

    config = WidthSweepConfig() if config is None else config
    require(isinstance(config, WidthSweepConfig), f"config must be a WidthSweepConfig (got {type(config).__name__})")
    check_cost(config)
    return run(config, progress=progress)


__all__ = ["task_set", "as_task_set", "make_tasks", "to_sphere", "fc_kernels", "depth_sweep", "empirical_kernels",
           "d_rel", "d_tr", "relative_error", "mean_ci", "gram", "predict", "adaptation_only", "run_depth_study", "depth_summary",
           "run_regime_study", "regime_verdicts", "run_width_study", "KernelFamily"]
