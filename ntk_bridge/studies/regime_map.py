"""The regime map: in which setting, if any, do MTL and GBML kernel predictors meet at depth?

docs/theory.md sections 7-8. A *cell* is one setting of everything the theorem's constants depend
on besides depth: the network (activation, biases), the inner loop's scale and the outer time.
For every cell the depth study of :mod:`ntk_bridge.studies.depth_sweep` runs over depths 1..1024 on the
same task draws (kernels are computed once per network and draw, for every depth in one pass,
and shared by the cells of that network), giving per depth x pair x draw: d_rel, d_tr, both
methods' test errors and the head-only baseline's.

Per cell and pair, :func:`summarize_cells` fits the deep-depth rates (slope of log mean distance
vs log L over ``L >= deep_from``; per-draw slopes give a t-interval) and the gain of each method
over head-only at the deepest depth, ``gain = err_head_only - err_method`` (positive: better
than fitting the head on the test support alone), mean and t-interval over draws.

The paper's claim in its strong form holds in a cell for a pair (MTL-B vs ANIL or MAML) when
(i) d_tr shrinks with depth (upper end of the 95% interval of the deep d_tr rate below
``SHRINK_RATE`` = -0.1, i.e. at least like L^-0.1: a rate of -0.01 would take d_tr down by 7%
over 64 <= L <= 1024, which is no convergence) and (ii) at the deepest depth both methods
still beat head-only (lower end of both gains' 95% intervals above ``GAIN_MIN`` = 0). The weak form replaces d_tr by d_rel in (i): the predictors
get closer, whether or not the parts learned from the training tasks do. :func:`verdicts` says so cell by cell; nothing is filled in: a depth whose solve
fails is recorded with its error message and NaN numbers.

The map is a grid of units (:mod:`ntk_bridge.grid`): one per network and draw, holding every cell
of that network, cached one file each and keyed by a hash of everything they depend on, so an
interrupted run resumes where it stopped, a rerun costs nothing, and the units can be spread over
worker processes, a Dask cluster or the tasks of a job array.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import PAIRS, PredictorConfig
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import BridgeError, require
from ntk_bridge.grid import GridOptions, GridOutcome, Unit, missing_text, read_grid, run_grid
from ntk_bridge.stats import fit_loglog, mean_ci
from ntk_bridge.studies.depth_sweep import DepthStudyConfig, rows_at_depth

if TYPE_CHECKING:
    import pandas as pd

CACHE_VERSION = 2   # 2: one unit file per network x draw (ntk_bridge.grid)
CLAIM_PAIRS = ("mtl-b vs anil", "mtl-b vs maml")
DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def erf_critical(q_star: float = 1.0) -> tuple[float, float]:
    """(W_std, b_std) of an Erf network on the edge of chaos with fixed-point variance ``q_star``.

    For u ~ N(0, q): E[erf(u)^2] = (2/pi) arcsin(2q / (1 + 2q)) and
    E[erf'(u)^2] = (4/pi) / sqrt(1 + 4q). Criticality chi_1 = W^2 E[erf'(u)^2] = 1 at q = q_star
    gives W^2 = (pi/4) sqrt(1 + 4 q*), and the fixed point q* = W^2 E[erf(u)^2] + b^2 gives b^2.
    q_star = 1: W_std^2 = pi sqrt(5) / 4 = 1.7562, b_std^2 = 0.1841.
    """
    require(q_star > 0, f"q_star must be > 0 (got {q_star!r})")
    w2 = math.pi / 4 * math.sqrt(1 + 4 * q_star)
    b2 = q_star - w2 * (2 / math.pi) * math.asin(2 * q_star / (1 + 2 * q_star))
    require(b2 >= 0, f"no critical Erf initialisation with q* = {q_star} (b^2 = {b2:.3g} < 0)")
    return math.sqrt(w2), math.sqrt(b2)


@dataclass(frozen=True)
class NetVariant:
    """A named network family of the map (depth is set per row)."""

    name: str
    spec: NetSpec


@dataclass(frozen=True)
class InnerVariant:
    """A named inner-loop scale of the map."""

    name: str
    inner: InnerLoop


def _erf_net() -> NetSpec:
    w, b = erf_critical(1.0)
    return NetSpec(activation="erf", W_std=w, b_std=b)


NETS = (NetVariant("relu-b0", NetSpec()), NetVariant("relu-b0.1", NetSpec(b_std=0.1)),
        NetVariant("relu-b0.5", NetSpec(b_std=0.5)), NetVariant("erf-critical", _erf_net()))
INNERS = (InnerVariant("fixed", InnerLoop("flow", tau=1.0)),
          InnerVariant("depth-norm", InnerLoop("flow", tau=1.0, scale="diag")),
          InnerVariant("ridge", InnerLoop("ridge", mu=0.1)),
          InnerVariant("tau-inf", InnerLoop("inf", eps=1e-6)))
OUTER_TIMES = (1.0, 10.0, math.inf)


def _by_name(options, names, what: str):
    known = {o.name: o for o in options}
    for n in names:
        require(n in known, f"unknown {what} {n!r}; choose from {', '.join(known)}")
    return tuple(known[n] for n in names)


@dataclass(frozen=True)
class Cell:
    """One regime: network x inner-loop scale x outer time."""

    net: NetVariant
    inner: InnerVariant
    outer_time: float

    @property
    def key(self) -> str:
        return f"{self.net.name}|{self.inner.name}|t={self.outer_time:g}"


@dataclass(frozen=True)
class RegimeMapConfig:
    """The grid (names from NETS / INNERS), depths, draws, tasks and fitting rules."""

    nets: tuple[str, ...] = tuple(n.name for n in NETS)
    inners: tuple[str, ...] = tuple(i.name for i in INNERS)
    outer_times: tuple[float, ...] = OUTER_TIMES
    outer_scale: str = "diag"
    outer_ridge: float = 1e-6
    depths: tuple[int, ...] = DEPTHS
    draws: int = 10
    seed: int = 0
    family: FamilyConfig = field(default_factory=FamilyConfig)
    deep_from: int = 64

    def __post_init__(self):
        _by_name(NETS, self.nets, "network")
        _by_name(INNERS, self.inners, "inner-loop scale")
        require(len(self.outer_times) >= 1 and all(t > 0 for t in self.outer_times),
                f"outer times must be > 0 (inf allowed); got {list(self.outer_times)}")
        require(isinstance(self.draws, int) and self.draws >= 2,
                f"draws must be an integer >= 2 so that intervals exist (got {self.draws!r})")
        require(len(self.depths) >= 1 and min(self.depths) >= 1, f"depths must be >= 1 (got {list(self.depths)})")
        deep = [d for d in self.depths if d >= self.deep_from]
        require(len(deep) >= 2, f"at least two depths must be >= deep_from = {self.deep_from} to fit a deep rate "
                                f"(got depths {list(self.depths)}); add depths or lower `deep_from`")

    def cells(self) -> list[Cell]:
        return [Cell(n, i, t) for n in _by_name(NETS, self.nets, "network")
                for i in _by_name(INNERS, self.inners, "inner-loop scale") for t in self.outer_times]

    def study(self, cell: Cell) -> DepthStudyConfig:
        """The depth study of ``cell``: exactly what ``ntk-bridge depth-sweep`` runs with its flags."""
        predictor = PredictorConfig(inner=cell.inner.inner, outer_time=cell.outer_time,
                                    outer_ridge=self.outer_ridge, outer_scale=self.outer_scale)
        return DepthStudyConfig(depths=tuple(self.depths), draws=self.draws, seed=self.seed,
                                net=replace(cell.net.spec, depth=max(self.depths)), family=self.family,
                                predictor=predictor, pairs=PAIRS)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["outer_times"] = [str(t) if not math.isfinite(t) else t for t in self.outer_times]
        d["cells"] = [{"key": c.key, **self.study(c).as_dict()} for c in self.cells()]
        return d


QUICK = RegimeMapConfig(nets=("relu-b0", "erf-critical"), inners=("fixed", "depth-norm"),
                        outer_times=(1.0, math.inf), depths=(1, 4, 16, 64), draws=2, deep_from=16,
                        family=FamilyConfig(n_train_tasks=5, n_test_tasks=4, n_query=4, n_support=4))


# ----------------------------------------------------------------------------- computing cells

def cell_rows(config: RegimeMapConfig, cell: Cell, tasks, kernels: dict, draw: int) -> list[dict]:
    """Rows depth x pair for one cell and draw; a depth whose solve fails gets NaN and its message."""
    study = config.study(cell)
    rows = []
    for depth in sorted(kernels):
        try:
            got = rows_at_depth(study, tasks, kernels[depth], depth, draw)
            status = "ok"
        except BridgeError as err:
            got = [{"depth": depth, "pair": f"{a} vs {b}", "draw": draw, "method_a": a, "method_b": b,
                    **{k: math.nan for k in ("d_rel", "d_tr", "err_a", "err_b", "err_head_only")}}
                   for a, b in study.pairs]
            status = f"failed: {err}"
        rows += [{"cell": cell.key, "net": cell.net.name, "inner": cell.inner.name,
                  "outer_time": cell.outer_time, **r, "status": status} for r in got]
    return rows


@dataclass(frozen=True)
class RegimeUnit:
    """One unit of the map's grid: every cell of one network on one task draw (the kernels are
    computed once per network and draw and shared by its cells)."""

    config: RegimeMapConfig
    net: str
    draw: int

    def cells(self) -> list[Cell]:
        return [c for c in self.config.cells() if c.net.name == self.net]


def _part(cell: Cell) -> str:
    return f"{cell.key}.csv"


def units(config: RegimeMapConfig) -> list[Unit]:
    """The grid's units, network by network and draw by draw; each keyed by the depth studies of its
    cells and its draw (:mod:`ntk_bridge.grid`)."""
    out = []
    for net in _by_name(NETS, config.nets, "network"):
        for draw in range(config.draws):
            arg = RegimeUnit(config, net.name, draw)
            spec = {"v": CACHE_VERSION, "draw": draw, "cells": {c.key: config.study(c).as_dict() for c in arg.cells()}}
            out.append(Unit("regime-map", f"{net.name}_draw{draw}", spec, arg))
    return out


def compute_unit(unit: RegimeUnit) -> dict[str, bytes]:
    """The rows of every cell of ``unit`` as CSV bytes, one part per cell (BLAS on one thread, see
    :func:`compute`)."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    config, cells = unit.config, unit.cells()
    with threadpool_limits(limits=1, user_api="blas"):
        tasks = make_tasks(config.family, config.seed + unit.draw)
        kernels = depth_sweep(replace(cells[0].net.spec, depth=max(config.depths)), tasks.points, depths=config.depths)
        return {_part(c): pd.DataFrame(cell_rows(config, c, tasks, kernels, unit.draw)).to_csv(index=False).encode()
                for c in cells}


def compute(config: RegimeMapConfig, cache: Path, progress: bool = True,
            options: GridOptions | None = None) -> pd.DataFrame | GridOutcome:
    """Every cell's rows (cached per network and draw in ``cache``, :mod:`ntk_bridge.grid`); the
    tidy frame of the map, or the :class:`GridOutcome` when units are still missing (a shard, a
    spent time budget).

    BLAS runs on one thread in every unit: the map's matrices are at most a few hundred wide, where
    threads only add synchronisation, and on a shared machine (load above the core count) a
    multi-threaded OpenBLAS eigh was measured 10-20x slower than a single-threaded one.
    """
    options = replace(options or GridOptions(), progress=progress)
    outcome = run_grid(units(config), compute_unit, cache, options, desc="regime map (network x draw)")
    return assemble(config, outcome) if outcome.complete else outcome


def assemble(config: RegimeMapConfig, outcome: GridOutcome) -> pd.DataFrame:
    """The tidy frame (cell x draw x depth x pair) from the units' parts, in the grid's order."""
    import pandas as pd
    by_name = {u.name: u.key for u in units(config)}
    parts = [pd.read_csv(io.BytesIO(outcome.parts[by_name[f"{c.net.name}_draw{d}"]][_part(c)]))
             for c in config.cells() for d in range(config.draws)]
    return pd.concat(parts, ignore_index=True)


def load(config: RegimeMapConfig, cache: Path) -> pd.DataFrame:
    """The tidy frame (cell x depth x pair x draw) from the cache of ``config``, computing nothing."""
    outcome = read_grid(units(config), cache)
    require(outcome.complete, missing_text(outcome, len(units(config)), cache))
    return assemble(config, outcome)


# ----------------------------------------------------------------------------- summaries

def _t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of :func:`ntk_bridge.stats.mean_ci` (NaN bounds for
    one value; all NaN if any value is NaN)."""
    mean, half = mean_ci(values)
    return mean, mean - half, mean + half


def _slope(depths, values) -> float:
    try:
        return fit_loglog(depths, values)[0]
    except BridgeError:
        return math.nan


def _deep_rates(g: pd.DataFrame, deep_from: int, metric: str) -> tuple[float, float, float, float]:
    """Deep-depth rate of ``metric``: (mean of per-draw slopes, its 95% t-interval, slope of the mean).

    Each draw's slope is the least-squares slope of log ``metric`` vs log L over L >= deep_from.
    """
    deep = g[g["depth"] >= deep_from]
    mean = deep.groupby("depth")[metric].mean()
    per_draw = [_slope(d["depth"], d[metric]) for _, d in deep.groupby("draw")]
    rate, lo, hi = _t_interval(per_draw)
    return rate, lo, hi, _slope(mean.index, mean.values)


def _gain(g: pd.DataFrame, depth: int, err: str) -> tuple[float, float, float]:
    at = g[g["depth"] == depth]
    return _t_interval(at["err_head_only"] - at[err])


def summarize_cells(frame: pd.DataFrame, deep_from: int) -> pd.DataFrame:
    """One row per cell x pair: distances at L = 1 and L_max, deep rates, gains over head-only."""
    import pandas as pd
    out = []
    for (cell, pair), g in frame.groupby(["cell", "pair"], sort=False):
        lo_d, hi_d = g["depth"].min(), g["depth"].max()
        mean = g.groupby("depth")[["d_rel", "d_tr"]].mean()
        row = {"cell": cell, "net": g["net"].iloc[0], "inner": g["inner"].iloc[0],
               "outer_time": g["outer_time"].iloc[0], "pair": pair, "depth_max": hi_d,
               "draws": g["draw"].nunique(), "failed_depths": int(g.loc[g["status"] != "ok", "depth"].nunique()),
               "d_rel_L1": mean.loc[lo_d, "d_rel"], "d_rel_Lmax": mean.loc[hi_d, "d_rel"],
               "d_tr_L1": mean.loc[lo_d, "d_tr"], "d_tr_Lmax": mean.loc[hi_d, "d_tr"]}
        for metric in ("d_rel", "d_tr"):
            (row[f"rate_{metric}"], row[f"rate_{metric}_lo"], row[f"rate_{metric}_hi"],
             row[f"rate_of_mean_{metric}"]) = _deep_rates(g, deep_from, metric)
        for who, err in (("a", "err_a"), ("b", "err_b")):
            row[f"err_{who}_Lmax"] = g.loc[g["depth"] == hi_d, err].mean()
            row[f"gain_{who}_L1"] = _gain(g, lo_d, err)[0]
            row[f"gain_{who}_Lmax"], row[f"gain_{who}_Lmax_lo"], row[f"gain_{who}_Lmax_hi"] = _gain(g, hi_d, err)
        row["err_head_only_Lmax"] = g.loc[g["depth"] == hi_d, "err_head_only"].mean()
        row["gain_a_retained"] = row["gain_a_Lmax"] / row["gain_a_L1"] if row["gain_a_L1"] > 0 else math.nan
        out.append(row)
    return pd.DataFrame(out)


SHRINK_RATE = -0.1   # d_tr "shrinks" when the upper end of its deep rate's 95% interval is below this
GAIN_MIN = 0.0       # a method "beats head-only" when the lower end of its gain's 95% interval exceeds this


@dataclass(frozen=True)
class Verdict:
    """Whether the strong claim holds in one cell for one MTL-vs-GBML pair, and why not."""

    cell: str
    pair: str
    d_tr_shrinks: bool
    both_beat_head_only: bool
    d_rel_shrinks: bool = False

    @property
    def holds(self) -> bool:
        """The strong form: the parts learned from the training tasks get closer, and still help."""
        return self.d_tr_shrinks and self.both_beat_head_only

    @property
    def weak_holds(self) -> bool:
        """The weak form: the predictors get closer (d_rel) while both still beat head-only."""
        return self.d_rel_shrinks and self.both_beat_head_only

    def reason(self) -> str:
        if self.holds:
            return "holds: d_tr shrinks and both beat head-only at L_max"
        why = [] if self.d_tr_shrinks else [f"d_tr does not shrink (rate not below {SHRINK_RATE:g})"]
        why += [] if self.both_beat_head_only else ["not both better than head-only at L_max"]
        return "; ".join(why)


def verdicts(summary: pd.DataFrame) -> list[Verdict]:
    """The strong-form verdict per cell for MTL-B vs ANIL and MTL-B vs MAML (module docstring)."""
    rows = summary[summary["pair"].isin(CLAIM_PAIRS)]
    return [Verdict(r.cell, r.pair, bool(r.rate_d_tr_hi < SHRINK_RATE),
                    bool(r.gain_a_Lmax_lo > GAIN_MIN and r.gain_b_Lmax_lo > GAIN_MIN),
                    bool(r.rate_d_rel_hi < SHRINK_RATE)) for r in rows.itertuples()]
