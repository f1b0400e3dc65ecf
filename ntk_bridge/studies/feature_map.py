"""The feature-map study: MTL vs GBML where finite networks learn features (muP) and where they do not (NTK).

A *unit* is one (parameterisation, depth, width, seed): the task draw ``make_tasks(family, seed)``
(a family with a known shared subspace P, ``subspace`` or ``quadratic``), one network
``init_net(net, width, seed, param=...)`` and, on it, every method of ``methods`` trained by
:func:`ntk_bridge.finite.training.train_and_predict` (MAML first order when ``first_order_maml``).
Per method, on the unseen test tasks (after test-time adaptation on their supports):

- ``test_error`` = ||F - Y||^2 / ||Y||^2 and ``gain`` = test_error(head-only) - test_error
  (positive: the training tasks helped beyond fitting the head on the test support);
- ``alignment`` of the learned first layer with the true subspace (:func:`alignment`): the top
  ``rank`` left singular vectors U of ``Delta W_1 = W_1 - W_1(0)`` (d, width), scored
  ``||P U||_F^2 / rank`` in [0, 1] (mean squared cosine of the principal angles; 1: the update
  lies in span P; a random rank-dim subspace scores rank / d on average).

Per pair (a, b) = (MTL-B, ANIL), (MTL-B, MAML): ``d_rel = ||F_a - F_b|| / ||F_b||``, ``d_tr =
||F_a - F_b|| / ||F_b - F_b(t = 0)||`` (:mod:`ntk_bridge.stats`; F_b(t = 0) is b's test-time
adaptation of the untrained network: the part of F_b that the training tasks made is the
denominator) and ``rep_overlap`` = ||U_a^T U_b||_F^2 / rank, the same principal-angle score between
the two methods' learned subspaces (do they learn the same representation?).

Outer schedule (as the width sweep's, :func:`ntk_bridge.finite.sweep.objective_kernel`): S =
ceil(outer_time * lam_max / lr_fraction) steps of lr = outer_time / S, lam_max of the method's
infinite-width objective kernel in NTK parameterisation; muP's initial kernel equals it in
expectation (:mod:`ntk_bridge.engine.parameterization`), so both parameterisations run the same steps.

Convergence in width: per (param, depth, seed, method) ``delta_width = ||F(n) - F(n_prev)|| /
||F(n)||`` between successive widths of the grid (a limit is being approached when it falls).

Units are cached one checksummed file per unit (its rows as JSON, its predictions as NPZ;
:mod:`ntk_bridge.grid`), keyed by a hash of everything they depend on, so an interrupted run
resumes where it stopped, and the units can run on local workers, a Dask cluster or a job array. Heavy imports (JAX) happen inside the functions.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ntk_bridge.closed_form.distances import d_rel, relative_error
from ntk_bridge.closed_form.tasks import SUBSPACE_FAMILIES, FamilyConfig, TaskSet, make_tasks
from ntk_bridge.engine.parameterization import PARAMS, Parameterization
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import BridgeError, require
from ntk_bridge.grid import GridOptions, read_grid, run_grid
from ntk_bridge.grid import Unit as GridUnit
from ntk_bridge.stats import finite_mean_ci, fit_loglog

if TYPE_CHECKING:
    import pandas as pd

CACHE_VERSION = 2   # 2: one checksummed file per unit (ntk_bridge.grid)
METHODS = ("head-only", "mtl-b", "anil", "maml")
PAIRS = (("mtl-b", "anil"), ("mtl-b", "maml"))


def _family() -> FamilyConfig:
    return FamilyConfig(family="quadratic", d=16, n_train_tasks=20, n_test_tasks=10, n_query=5, n_support=5,
                        spread=0.5, rank=3)


@dataclass(frozen=True)
class FeatureMapConfig:
    """Everything the study depends on (saved next to its results).

    ``width_caps``: (depth, widest width) pairs, e.g. ((4, 1024),): the widths above a cap are
    not trained at that depth (cost). ``dtype``: training precision of the networks.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    depths: tuple[int, ...] = (1, 2, 4)
    params: tuple[str, ...] = ("ntk", "mup")
    base_width: int = 64
    seeds: int = 5
    seed: int = 0
    net: NetSpec = field(default_factory=NetSpec)
    family: FamilyConfig = field(default_factory=_family)
    inner_step: float = 0.2
    inner_steps: int = 5
    outer_time: float = 20.0
    lr_fraction: float = 0.5
    first_order_maml: bool = True
    width_caps: tuple[tuple[int, int], ...] = ((2, 512), (4, 128))
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("widths", "depths"):
            vals = tuple(getattr(self, name))
            require(len(vals) >= 1, f"give at least one of {name}")
            for v in vals:
                require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                        f"every entry of {name} must be an integer >= 1 (got {v!r})")
            object.__setattr__(self, name, tuple(sorted(set(int(v) for v in vals))))
        require(len(self.params) >= 1, "give at least one parameterisation")
        for p in self.params:
            require(p in PARAMS, f"unknown parameterisation {p!r}; choose from {', '.join(PARAMS)}")
        Parameterization("mup", int(self.base_width))       # validates the base width
        require(isinstance(self.seeds, (int, np.integer)) and self.seeds >= 1, f"seeds must be >= 1 (got {self.seeds!r})")
        require(self.family.family in SUBSPACE_FAMILIES,
                f"the feature map needs a family with a known subspace ({', '.join(SUBSPACE_FAMILIES)}); "
                f"got {self.family.family!r}")
        require(np.isfinite(self.outer_time) and self.outer_time > 0, f"outer time must be > 0 (got {self.outer_time!r})")
        require(0 < self.lr_fraction < 2, f"lr fraction must be in (0, 2) (got {self.lr_fraction!r})")
        require(self.dtype in ("float64", "float32"), f"dtype must be float64 or float32 (got {self.dtype!r})")
        object.__setattr__(self, "width_caps", tuple((int(a), int(b)) for a, b in self.width_caps))
        self.gd(1.0, 1)                                       # validates the inner loop

    def gd(self, lr: float, steps: int, first_order: bool = False):
        from ntk_bridge.finite.training import GDConfig

        return GDConfig(inner_step=float(self.inner_step), inner_steps=int(self.inner_steps), outer_lr=float(lr),
                        outer_steps=int(steps), dtype=self.dtype, first_order=bool(first_order))

    def widths_at(self, depth: int) -> tuple[int, ...]:
        cap = dict(self.width_caps).get(int(depth))
        return tuple(w for w in self.widths if cap is None or w <= cap)

    def units(self) -> list["Unit"]:
        # cheap first and balanced: a run stopped early has every parameterisation at the same widths
        return [Unit(p, L, w, self.seed + s) for L in self.depths for w in self.widths_at(L)
                for s in range(self.seeds) for p in self.params]

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        maml = "first-order MAML" if self.first_order_maml else "second-order MAML"
        return (f"{self.family.describe()}, rank {self.family.rank}; {self.net.activation} MLP; inner "
                f"{self.inner_steps} x {self.inner_step:g}, outer eta*t={self.outer_time:g}; {maml}; "
                f"{self.seeds} seeds; {self.dtype}")


QUICK = FeatureMapConfig(widths=(64, 256), depths=(1, 2), seeds=2, outer_time=5.0, width_caps=(),
                         family=replace(_family(), n_train_tasks=6, n_test_tasks=4))


@dataclass(frozen=True)
class Unit:
    param: str
    depth: int
    width: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.param}_L{self.depth}_w{self.width}_s{self.seed}"


# ----------------------------------------------------------------------------- representation scores

def top_subspace(delta_w: np.ndarray, rank: int) -> np.ndarray:
    """The top ``rank`` left singular vectors (d, rank) of a first-layer update ``delta_w`` (d, width)."""
    u, _, _ = np.linalg.svd(np.asarray(delta_w, np.float64), full_matrices=False)
    return u[:, :rank]


def subspace_overlap(u: np.ndarray, v: np.ndarray) -> float:
    """``||U^T V||_F^2 / r``: mean squared cosine of the principal angles between span U and span V
    (orthonormal columns, (d, r) each), in [0, 1]."""
    require(u.shape == v.shape, f"subspaces must have the same shape; got {u.shape} and {v.shape}")
    return float(np.sum((u.T @ v) ** 2) / u.shape[1])


def alignment(delta_w: np.ndarray, proj: np.ndarray) -> float:
    """Principal-angle score of the learned first-layer update against the true subspace.

    ``delta_w`` (d, width) = W_1 - W_1(0); ``proj`` (rank, d) the ground truth P with orthonormal
    rows. Returns ``||P U||_F^2 / rank`` with U the top-rank left singular vectors of delta_w: 1
    when the update lies in span P, rank / d on average for a random subspace; NaN for no update.
    """
    proj = np.asarray(proj, np.float64)
    if not np.any(delta_w):
        return float("nan")
    return subspace_overlap(top_subspace(delta_w, proj.shape[0]), proj.T)


# ----------------------------------------------------------------------------- one unit

def schedule(config: FeatureMapConfig, method: str, tasks: TaskSet, gram) -> tuple[float, int]:
    """(lr, S) of ``method``: S = ceil(t lam_max / fraction) steps of lr = t / S."""
    from ntk_bridge.finite.sweep import objective_kernel

    if method == "head-only":
        return 1.0, 0
    lam = float(np.linalg.eigvalsh(objective_kernel(method, tasks, gram, config.gd(1.0, 0).inner)).max())
    steps = max(1, int(math.ceil(config.outer_time * lam / config.lr_fraction)))
    return config.outer_time / steps, steps


def _first_layer(params) -> np.ndarray:
    return np.asarray(params[0][0], np.float64)


def train_unit(config: FeatureMapConfig, unit: Unit) -> tuple[dict, list[dict], list[dict]]:
    """Train every method on one unit; (predictions by method and "<m>@0", method rows, pair rows)."""
    from ntk_bridge.finite.closed import infinite_gram
    from ntk_bridge.finite.training import init_net, train_and_predict

    tasks = make_tasks(config.family, unit.seed)
    spec = config.net.with_depth(unit.depth)
    gram = infinite_gram(spec, tasks)
    param = Parameterization(unit.param, int(config.base_width))
    net = init_net(spec, unit.width, unit.seed, config.family.d, 1, param)
    w0 = _first_layer(net.params0).astype(config.dtype).astype(np.float64)   # as training starts from it
    proj, y = tasks.meta["subspace"], tasks.test_y_query()
    preds, rows, subspaces = {}, [], {}
    for method in METHODS:
        fo = method == "maml" and config.first_order_maml
        start = time.process_time()
        lr, steps = float("nan"), 0
        try:   # the schedule refuses an inner step that diverges on the support kernel (MAML at depth)
            lr, steps = schedule(config, method, tasks, gram)
            res = train_and_predict(method, net, tasks, config.gd(lr, steps, fo))
            failed, p, losses = "", res.predictions, res.losses
            delta = _first_layer(res.params) - w0
            if method != "head-only":
                preds[f"{method}@0"] = train_and_predict(method, net, tasks, config.gd(lr, 0, fo)).predictions
        except BridgeError as err:
            failed, p, losses, delta = str(err), None, np.zeros(0), None
        if p is not None:
            preds[method] = p
            if method != "head-only":
                subspaces[method] = top_subspace(delta, proj.shape[0])
        nan = float("nan")
        rows.append(dict(**asdict(unit), method=method, test_error=relative_error(p, y) if p is not None else nan,
                         alignment=alignment(delta, proj) if delta is not None else nan,
                         update_norm=float(np.linalg.norm(delta) / np.linalg.norm(w0)) if delta is not None else nan,
                         outer_lr=lr, outer_steps=steps, loss_initial=float(losses[0]) if losses.size else nan,
                         loss_final=float(losses[-1]) if losses.size else nan,
                         cpu_seconds=round(time.process_time() - start, 2), failed=failed))
    head = rows[0]["test_error"]
    for r in rows:
        r["gain"] = head - r["test_error"]
    return preds, rows, _pair_rows(unit, preds, subspaces)


def _pair_rows(unit: Unit, preds: dict, subspaces: dict) -> list[dict]:
    out = []
    for a, b in PAIRS:
        ok = a in preds and b in preds
        den = np.linalg.norm(preds[b] - preds[f"{b}@0"]) if ok else 0.0
        out.append(dict(**asdict(unit), pair=f"{a} vs {b}",
                        d_rel=d_rel(preds[a], preds[b]) if ok else float("nan"),
                        d_tr=float(np.linalg.norm(preds[a] - preds[b]) / den) if ok and den > 0 else float("nan"),
                        rep_overlap=subspace_overlap(subspaces[a], subspaces[b])
                        if a in subspaces and b in subspaces else float("nan")))
    return out


# ----------------------------------------------------------------------------- cache

GRID_FIELDS = ("widths", "depths", "params", "seeds", "width_caps")


@dataclass(frozen=True)
class UnitTask:
    """What one unit of the grid computes (:func:`compute_unit`): ``unit`` under ``config``."""

    config: FeatureMapConfig
    unit: Unit


def grid_units(config: FeatureMapConfig) -> list[GridUnit]:
    """The grid's units (:mod:`ntk_bridge.grid`), in :meth:`FeatureMapConfig.units` order, each keyed by
    the unit and every setting except the grid (widths, depths, params, seeds, width caps): a grid
    extended later reuses every unit already trained."""
    shared = {k: v for k, v in config.as_dict().items() if k not in GRID_FIELDS}
    return [GridUnit("feature-map", u.key, {"v": CACHE_VERSION, "config": shared, "unit": asdict(u)},
                     UnitTask(config, u)) for u in config.units()]


def compute_unit(task: UnitTask) -> dict[str, bytes]:
    """Train one unit: its rows and pairs (JSON) and every method's predictions (NPZ)."""
    from ntk_bridge.io import json_text

    preds, rows, pairs = train_unit(task.config, task.unit)
    npz = io.BytesIO()
    np.savez(npz, **preds)
    return {"unit.json": json_text({"rows": rows, "pairs": pairs}).encode(), "preds.npz": npz.getvalue()}


def compute(config: FeatureMapConfig, cache: Path, progress: bool = True, budget_s: float | None = None,
            options: GridOptions | None = None) -> int:
    """Train every unit not yet in ``cache`` (one checksummed file per unit, :mod:`ntk_bridge.grid`;
    ``options``: where the units run, a shard). Stops starting new units after ``budget_s`` seconds
    of wall time. Returns the number of units still missing."""
    options = options or GridOptions()
    options = replace(options, progress=progress, budget_s=options.budget_s if budget_s is None else budget_s)
    return len(run_grid(grid_units(config), compute_unit, cache, options, desc="feature map (unit)").missing)


def load(config: FeatureMapConfig, cache: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(method rows, pair rows with delta_width added to the method rows, units missing)."""
    import pandas as pd
    rows, pairs, preds = [], [], {}
    grid = grid_units(config)
    outcome = read_grid(grid, cache)
    for gu in grid:
        if gu.key not in outcome.parts:
            continue
        got = json.loads(outcome.parts[gu.key]["unit.json"])
        rows += got["rows"]
        pairs += got["pairs"]
        with np.load(io.BytesIO(outcome.parts[gu.key]["preds.npz"])) as f:
            preds[gu.arg.unit] = {k: f[k] for k in f.files}
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["delta_width"] = [_delta_width(config, preds, r) for r in frame.itertuples()]
    return frame, pd.DataFrame(pairs), len(outcome.missing)


def _delta_width(config: FeatureMapConfig, preds: dict, r) -> float:
    widths = config.widths_at(r.depth)
    i = widths.index(r.width)
    if i == 0:
        return float("nan")
    a = preds.get(Unit(r.param, r.depth, r.width, r.seed), {}).get(r.method)
    b = preds.get(Unit(r.param, r.depth, widths[i - 1], r.seed), {}).get(r.method)
    return d_rel(b, a) if a is not None and b is not None else float("nan")


# ----------------------------------------------------------------------------- summaries

def table(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, 95% t half-width (``X_ci95``) and n over seeds of each metric, per ``keys`` group."""
    import pandas as pd
    out = []
    for k, g in frame.groupby(keys, sort=True):
        row = dict(zip(keys, k))
        for m in metrics:
            row[m], row[f"{m}_ci95"], row["seeds"] = finite_mean_ci(g[m])[:3]
        out.append(row)
    return pd.DataFrame(out)


def width_slopes(frame: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group: the log-log slope of ``metric`` vs width, one fit per seed, mean +- t 95%."""
    import pandas as pd
    out = []
    for k, g in frame.groupby(keys, sort=True):
        slopes = []
        for _, s in g.groupby("seed"):
            s = s[np.isfinite(s[metric]) & (s[metric] > 0)]
            if s["width"].nunique() >= 2:
                slopes.append(fit_loglog(s["width"], s[metric])[0])
        m, h, n = finite_mean_ci(slopes)[:3]
        out.append({**dict(zip(keys, k)), "metric": metric, "slope": m, "slope_ci95": h, "seeds": n})
    return pd.DataFrame(out)


def depth_slopes(pairs: pd.DataFrame, metric: str = "d_tr") -> pd.DataFrame:
    """Per (param, pair), at the widest width trained at every depth: the log-log slope of
    ``metric`` vs depth, one fit per seed, mean +- t 95% (``width`` says which width)."""
    import pandas as pd
    out = []
    for (param, pair), g in pairs.groupby(["param", "pair"], sort=True):
        common = set.intersection(*(set(h["width"]) for _, h in g.groupby("depth")))
        if not common or g["depth"].nunique() < 2:
            continue
        w = max(common)
        g = g[g["width"] == w]
        slopes = [fit_loglog(s["depth"], s[metric])[0] for _, s in g.groupby("seed")
                  if np.isfinite(s[metric]).sum() >= 2]
        m, h, n = finite_mean_ci(slopes)[:3]
        out.append(dict(param=param, pair=pair, metric=f"{metric} vs depth", width=w, slope=m, slope_ci95=h, seeds=n))
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Verdict:
    """One (param, depth, pair) at its widest width: do MTL-B and the GBML method meet while
    both beat head-only, and do they learn the same representation?"""

    param: str
    depth: int
    pair: str
    width: int
    d_tr: tuple[float, float]
    d_rel: tuple[float, float]
    gain_a: tuple[float, float]
    gain_b: tuple[float, float]
    align_a: tuple[float, float]
    align_b: tuple[float, float]
    rep_overlap: tuple[float, float]
    d_tr_width_slope: tuple[float, float]

    @property
    def both_beat_head_only(self) -> bool:
        return self.gain_a[0] - self.gain_a[1] > 0 and self.gain_b[0] - self.gain_b[1] > 0

    @property
    def closer_with_width(self) -> bool:
        return self.d_tr_width_slope[0] + self.d_tr_width_slope[1] < 0

    def line(self) -> str:
        f = lambda v: f"{v[0]:.3f} +- {v[1]:.3f}"  # noqa: E731
        return (f"{self.param:4s} L={self.depth} {self.pair:14s} w={self.width:5d}: d_tr {f(self.d_tr)}, "
                f"d_rel {f(self.d_rel)}, gains {f(self.gain_a)} / {f(self.gain_b)}, align {f(self.align_a)} / "
                f"{f(self.align_b)}, overlap {f(self.rep_overlap)}, d_tr slope vs width {f(self.d_tr_width_slope)}"
                f" -> {'both beat head-only' if self.both_beat_head_only else 'NOT both above head-only'}, "
                f"{'closer with width' if self.closer_with_width else 'not closer with width'}")


def verdicts(frame: pd.DataFrame, pairs: pd.DataFrame) -> list[Verdict]:
    """One verdict per (param, depth, pair) at the widest width trained there (t-intervals over seeds)."""
    slopes = width_slopes(pairs, "d_tr", ["param", "depth", "pair"])
    out = []
    for (param, depth, pair), g in pairs.groupby(["param", "depth", "pair"], sort=True):
        w = int(g["width"].max())
        g = g[g["width"] == w]
        a, b = pair.split(" vs ")
        f = frame[(frame["param"] == param) & (frame["depth"] == depth) & (frame["width"] == w)]
        ci = lambda v: finite_mean_ci(v)[:2]  # noqa: E731
        s = slopes[(slopes["param"] == param) & (slopes["depth"] == depth) & (slopes["pair"] == pair)]
        out.append(Verdict(param, int(depth), pair, w, ci(g["d_tr"]), ci(g["d_rel"]),
                           ci(f[f["method"] == a]["gain"]), ci(f[f["method"] == b]["gain"]),
                           ci(f[f["method"] == a]["alignment"]), ci(f[f["method"] == b]["alignment"]),
                           ci(g["rep_overlap"]), (float(s["slope"].iloc[0]), float(s["slope_ci95"].iloc[0]))
                           if len(s) else (float("nan"), float("nan"))))
    return out


def verdict_frame(vs: list[Verdict]) -> pd.DataFrame:
    import pandas as pd
    rows = []
    for v in vs:
        row = dict(param=v.param, depth=v.depth, pair=v.pair, width=v.width)
        for name in ("d_tr", "d_rel", "gain_a", "gain_b", "align_a", "align_b", "rep_overlap", "d_tr_width_slope"):
            row[name], row[f"{name}_ci95"] = getattr(v, name)
        row["both_beat_head_only"] = v.both_beat_head_only
        row["closer_with_width"] = v.closer_with_width
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figure

def plot(frame: pd.DataFrame, pairs: pd.DataFrame, title: str):
    """Four panels vs width (one line per param x depth): d_tr (MTL-B vs ANIL solid, vs MAML dashed),
    gain over head-only (MTL-B), first-layer alignment (MTL-B solid, ANIL dashed), delta_width (MTL-B)."""
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(20, 4.8))
    axes = fig.subplots(1, 4)
    pt = table(pairs, ["param", "depth", "pair", "width"], ["d_tr"])
    mt = table(frame, ["param", "depth", "method", "width"], ["gain", "alignment", "delta_width"])
    colors = {}
    for (param, depth), _ in mt.groupby(["param", "depth"], sort=True):
        colors[(param, depth)] = f"C{len(colors)}"
    styles = {"mtl-b vs anil": "-", "mtl-b vs maml": "--", "mtl-b": "-", "anil": "--", "maml": ":"}
    panels = [(axes[0], pt, "pair", ["mtl-b vs anil", "mtl-b vs maml"], "d_tr", "d_tr (MTL-B vs ANIL -, vs MAML --)"),
              (axes[1], mt, "method", ["mtl-b", "anil", "maml"], "gain", "gain over head-only (MTL-B -, ANIL --, MAML :)"),
              (axes[2], mt, "method", ["mtl-b", "anil", "maml"], "alignment", "first-layer alignment with P"),
              (axes[3], mt, "method", ["mtl-b", "anil", "maml"], "delta_width",
               "||F(n) - F(previous width)|| / ||F(n)||")]
    for ax, t, col, which, metric, ylabel in panels:
        for (param, depth, what), g in t.groupby(["param", "depth", col], sort=True):
            if what not in which:
                continue
            g = g[np.isfinite(g[metric])]
            label = f"{param} L={depth}" if what == which[0] else None
            err = g[f"{metric}_ci95"].fillna(0).to_numpy()
            lower = np.minimum(err, 0.95 * g[metric].to_numpy()) if metric in ("d_tr", "delta_width") else err
            ax.errorbar(g["width"], g[metric], yerr=[lower, err], ls=styles[what], marker="o", ms=3,
                        capsize=2, color=colors[(param, depth)], label=label)
        ax.set(xscale="log", xlabel="width n", ylabel=ylabel)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if metric in ("d_tr", "delta_width"):
            ax.set_yscale("log")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(title + " (mean and 95% t-interval over seeds)", fontsize=9)
    fig.tight_layout()
    return fig
