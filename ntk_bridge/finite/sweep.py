"""The width sweep: finite networks vs the closed forms of theory.md, as the width grows.

For each seed s (task draw ``make_tasks(family, seed + s)`` and network ``PRNGKey(seed + s)``)
and each width m, every method is trained at width m (:mod:`ntk_bridge.finite.training`) and
compared with its closed form (:mod:`ntk_bridge.finite.closed`, infinite-width kernels, the
network's own f_0, the same inner and outer steps):

    rel_error = ||F_net - F_closed|| / ||F_closed||     over all test queries of the draw,

and, for the methods that learn from the training tasks, the transfer-normalised
``||F_net - F_closed|| / ||F_closed - F_closed(t = 0)||``. The slope of log(mean rel_error) vs
log(width) is fitted per method (about -1/2 is expected: the empirical kernels fluctuate by
O(m^-1/2) and move by O(m^-1/2) in training).

Outer schedule: every method trains for the same function-space time ``eta t = outer_time``, in
S = ceil(outer_time * lam_max / lr_fraction) steps of size lr = outer_time / S, lam_max being
the largest eigenvalue of the method's infinite-width objective kernel (Theta_MTL for MTL, the
Meta-NTK Phi for ANIL/MAML, Theta on the training queries for ntk). The closed forms use the same
S discrete steps, so discretisation is not part of the measured error; the flow closed form's
distance to it is recorded as ``disc_gap``.

Pairs: the MTL-vs-GBML distances d_rel and d_tr at finite width next to their infinite-width
values, and ("mtl-a", "head-only"): the influence of the training tasks on MTL-A's test
predictions (exactly 0 at infinite width).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd

from ntk_bridge.errors import require
from ntk_bridge.finite.training import FINITE_METHODS, TrainConfig
from ntk_bridge.inner_loop import InnerLoop
from ntk_bridge.kernels import Kernels, NetSpec
from ntk_bridge.metrics import d_rel, fit_loglog, mean_ci, relative_error
from ntk_bridge.tasks import FamilyConfig, TaskSet, make_tasks

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
DEFAULT_PAIRS = (("mtl-b", "anil"), ("mtl-b", "maml"), ("mtl-a", "anil"), ("mtl-a", "head-only"))
SLOPE_METHODS = ("mtl-b", "anil", "maml")


def _small_family() -> FamilyConfig:
    return FamilyConfig(family="teacher", d=16, n_train_tasks=5, n_test_tasks=4, n_query=5, n_support=5)


@dataclass(frozen=True)
class WidthSweepConfig:
    """Everything a width sweep depends on (saved next to its results)."""

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    seeds: int = 4
    seed: int = 0
    net: NetSpec = field(default_factory=NetSpec)
    family: FamilyConfig = field(default_factory=_small_family)
    methods: tuple[str, ...] = FINITE_METHODS
    inner_step: float = 0.2
    inner_steps: int = 5
    outer_time: float = 10.0
    lr_fraction: float = 0.5
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS

    def __post_init__(self):
        widths = tuple(self.widths)
        require(len(widths) >= 1, "give at least one width")
        for w in widths:
            require(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1,
                    f"every width must be an integer >= 1 (got {w!r})")
        object.__setattr__(self, "widths", tuple(sorted(set(int(w) for w in widths))))
        require(isinstance(self.seeds, (int, np.integer)) and self.seeds >= 1, f"seeds must be >= 1 (got {self.seeds!r})")
        require(len(self.methods) >= 1, "give at least one method")
        for m in self.methods:
            require(m in FINITE_METHODS, f"unknown method {m!r}; choose from {', '.join(FINITE_METHODS)}")
        require(np.isfinite(self.outer_time) and self.outer_time >= 0,
                f"outer time must be finite and >= 0 for finite training (got {self.outer_time!r})")
        require(0 < self.lr_fraction < 2,
                f"lr fraction (lr * lam_max) must be in (0, 2) for gradient descent to converge (got {self.lr_fraction!r})")
        self.inner  # validates the inner step size and count

    @property
    def inner(self) -> InnerLoop:
        return InnerLoop(form="steps", step_size=float(self.inner_step), steps=int(self.inner_steps))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["net"] = asdict(self.net)
        d["family"] = asdict(self.family)
        return d


# ----------------------------------------------------------------------------- schedule

def objective_kernel(method: str, tasks: TaskSet, gram: Kernels, inner: InnerLoop) -> np.ndarray:
    """The kernel of the outer objective's linear dynamics (theory.md 4-5), for the step size.

    MTL: Theta_MTL on Z (Theta_b + 1[same task] K); ANIL/MAML: the Meta-NTK
    Phi = A Theta(Z, Z) A^T with A_i = [I, -K_in(X_i, X'_i) T_i]; ntk: Theta on the training queries.
    """
    theta, k = gram.theta, gram.k
    if method in ("mtl-a", "mtl-b"):
        z = tasks.train_z.reshape(-1)
        tid = np.repeat(np.arange(len(tasks.train)), tasks.train_z.shape[1])
        same = tid[:, None] == tid[None, :]
        return (theta - k)[np.ix_(z, z)] + same * k[np.ix_(z, z)]
    if method == "ntk":
        q = tasks.train_q.reshape(-1)
        return theta[np.ix_(q, q)]
    require(method in ("anil", "maml"), f"no outer objective for {method!r}")
    kin = theta if method == "maml" else k
    blocks = []
    for q, s in zip(tasks.train_q, tasks.train_s):
        t = inner.operator(kin[np.ix_(s, s)])
        blocks.append((q, s, kin[np.ix_(q, s)] @ t))
    n_q = tasks.train_q.shape[1]
    z = tasks.train_z.reshape(-1)
    a = np.zeros((len(blocks) * n_q, len(z)))
    width_z = tasks.train_z.shape[1]
    for i, (_, _, kt) in enumerate(blocks):
        a[i * n_q:(i + 1) * n_q, i * width_z:i * width_z + n_q] = np.eye(n_q)
        a[i * n_q:(i + 1) * n_q, i * width_z + n_q:(i + 1) * width_z] = -kt
    return a @ theta[np.ix_(z, z)] @ a.T


def schedule(method: str, tasks: TaskSet, gram: Kernels, config: WidthSweepConfig) -> TrainConfig:
    """The TrainConfig of ``method``: S = ceil(t lam_max / fraction) steps of lr = t / S."""
    base = TrainConfig(inner_step=config.inner_step, inner_steps=config.inner_steps, outer_lr=1.0, outer_steps=0)
    if method == "head-only" or config.outer_time == 0:
        return base
    lam = float(np.linalg.eigvalsh(objective_kernel(method, tasks, gram, config.inner)).max())
    steps = max(1, int(math.ceil(config.outer_time * lam / config.lr_fraction)))
    return replace(base, outer_lr=config.outer_time / steps, outer_steps=steps)


# ----------------------------------------------------------------------------- the sweep

def run(config: WidthSweepConfig, progress: bool = True,
        on_width: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the sweep; returns (errors: one row per width x seed x method, pairs: per width x seed x pair).

    ``on_width(errors, pairs)``, if given, receives the rows so far after each width (to save
    partial results of a long sweep).
    """
    from tqdm import tqdm

    from ntk_bridge.finite.closed import closed_form, infinite_gram
    from ntk_bridge.finite.training import init_net, initial_outputs, train_and_predict

    methods = list(config.methods)
    draws = []
    for s in range(config.seeds):
        seed = config.seed + s
        tasks = make_tasks(config.family, seed)
        gram = infinite_gram(config.net, tasks)
        draws.append((seed, tasks, gram, {m: schedule(m, tasks, gram, config) for m in methods}))

    err_rows, pair_rows = [], []
    bar = tqdm(total=len(config.widths) * len(draws) * len(methods), disable=not progress,
               desc="width sweep", unit="run")
    for width in config.widths:
        for seed, tasks, gram, sched in draws:
            net = init_net(config.net, width, seed, config.family.d, config.family.n_train_tasks)
            f0 = initial_outputs(net, tasks.points)
            y_test = tasks.test_y_query()
            fin, cf, cf0, fin0 = {}, {}, {}, {}
            for method in methods:
                tc = sched[method]
                start = time.perf_counter()
                res = train_and_predict(method, net, tasks, tc)
                seconds = time.perf_counter() - start
                fin[method] = res.predictions
                cf[method] = closed_form(method, tasks, gram, tc, f0)
                cf_flow = closed_form(method, tasks, gram, tc, f0, discrete=False)
                cf0[method] = closed_form(method, tasks, gram, tc, f0, outer_steps=0)
                transfer = np.linalg.norm(cf[method] - cf0[method])
                diff = np.linalg.norm(fin[method] - cf[method])
                err_rows.append(dict(
                    depth=config.net.depth, width=width, seed=seed, method=method,
                    rel_error=d_rel(fin[method], cf[method]),
                    rel_error_transfer=diff / transfer if transfer > 1e-12 * np.linalg.norm(cf[method]) else np.nan,
                    disc_gap=d_rel(cf_flow, cf[method]),
                    test_error_net=relative_error(fin[method], y_test),
                    test_error_closed=relative_error(cf[method], y_test),
                    outer_lr=tc.outer_lr, outer_steps=tc.outer_steps,
                    loss_initial=float(res.losses[0]) if res.losses.size else np.nan,
                    loss_final=res.final_loss, seconds=seconds))
                bar.update(1)
            for a, b in config.pairs:
                if a not in fin or b not in fin:
                    continue
                if b not in fin0:
                    fin0[b] = train_and_predict(b, net, tasks, replace(sched[b], outer_steps=0)).predictions
                pair_rows.append(dict(
                    depth=config.net.depth, width=width, seed=seed, pair=f"{a} vs {b}",
                    d_rel_net=d_rel(fin[a], fin[b]), d_rel_closed=d_rel(cf[a], cf[b]),
                    d_tr_net=_d_tr(fin[a], fin[b], fin0[b]), d_tr_closed=_d_tr(cf[a], cf[b], cf0[b])))
        if on_width is not None:
            on_width(pd.DataFrame(err_rows), pd.DataFrame(pair_rows))
    bar.close()
    return pd.DataFrame(err_rows), pd.DataFrame(pair_rows)


def _d_tr(fa: np.ndarray, fb: np.ndarray, fb0: np.ndarray) -> float:
    """||F_a - F_b|| / ||F_b - F_b(t=0)||, NaN when F_b learned nothing from the training tasks."""
    den = np.linalg.norm(fb - fb0)
    return float(np.linalg.norm(fa - fb) / den) if den > 1e-12 * max(np.linalg.norm(fb), 1e-300) else np.nan


# ----------------------------------------------------------------------------- summaries

def error_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% CI (t(0.975, seeds-1) std / sqrt(seeds), NaN kept) of rel_error per method and width."""
    rows = []
    for (method, width), g in errors.groupby(["method", "width"], sort=True):
        m, h = mean_ci(g["rel_error"])
        rows.append(dict(method=method, width=width, seeds=len(g), rel_error=m, rel_error_ci95=h,
                         rel_error_transfer=float(np.nanmean(g["rel_error_transfer"])) if g["rel_error_transfer"].notna().any() else np.nan,
                         disc_gap=float(g["disc_gap"].max())))
    return pd.DataFrame(rows)


def slope_table(errors: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Log-log slope of error vs width per method (of the seed mean, and per seed: mean +- 95% CI).

    For the ("mtl-a", "head-only") pair the fitted quantity is MTL-A's training-task influence.
    """
    rows = []
    series = [(m, g, "rel_error") for m, g in errors.groupby("method", sort=True)]
    if pairs is not None and len(pairs):
        infl = pairs[pairs["pair"] == "mtl-a vs head-only"]
        if len(infl):
            series.append(("mtl-a influence", infl, "d_rel_net"))
    for name, g, col in series:
        if g["width"].nunique() < 2:
            continue
        mean = g.groupby("width")[col].mean()
        slope, _ = fit_loglog(mean.index.values, mean.values)
        per_seed = [fit_loglog(s["width"].values, s[col].values)[0]
                    for _, s in g.groupby("seed") if s["width"].nunique() >= 2]
        sm, sh = mean_ci(per_seed)
        widest = g[g["width"] == g["width"].max()][col]
        wm, wh = mean_ci(widest)
        rows.append(dict(quantity=name, slope=slope, slope_seed_mean=sm, slope_seed_ci95=sh,
                         widest=int(g["width"].max()), at_widest=wm, at_widest_ci95=wh, seeds=len(per_seed)))
    return pd.DataFrame(rows)


def distance_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the finite and infinite-width distances per pair and width."""
    cols = ["d_rel_net", "d_rel_closed", "d_tr_net", "d_tr_closed"]
    return pairs.groupby(["pair", "width"], sort=True)[cols].mean().reset_index()


def plot(errors: pd.DataFrame, pairs: pd.DataFrame, slopes: pd.DataFrame, title: str):
    """Two log-log panels: rel_error vs width (fitted slopes), distances finite vs infinite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
    slope_of = dict(zip(slopes["quantity"], slopes["slope"])) if len(slopes) else {}
    table = error_table(errors)
    for method, g in table.groupby("method", sort=True):
        w, m, h = g["width"].values, g["rel_error"].values, g["rel_error_ci95"].values
        label = f"{method} (slope {slope_of[method]:+.2f})" if method in slope_of else method
        line = ax.errorbar(w, m, yerr=np.minimum(h, 0.95 * m), marker="o", ms=4, capsize=2, label=label)
        if method in slope_of and len(w) >= 2:
            s, c = fit_loglog(w, m)
            ax.plot(w, np.exp(c) * w ** s, ls=":", color=line[0].get_color(), lw=1)
    w = np.array(sorted(errors["width"].unique()), float)
    if len(w):
        ref = table.groupby("width")["rel_error"].mean().values
        ax.plot(w, ref[0] * (w / w[0]) ** -0.5, "k--", lw=1, label="width$^{-1/2}$")
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel="||F_net - F_closed|| / ||F_closed||",
           title="finite network vs closed form (mean, 95% CI over seeds)")
    ax.legend(fontsize=8)
    if len(pairs):
        dist = distance_table(pairs)
        for pair, g in dist.groupby("pair", sort=True):
            if pair == "mtl-a vs head-only":
                label = f"MTL-A training-task influence (slope {slope_of.get('mtl-a influence', np.nan):+.2f})"
                bx.plot(g["width"], g["d_rel_net"], "k-o", ms=4, label=label)
                continue
            line = bx.plot(g["width"], g["d_rel_net"], marker="o", ms=4, label=f"{pair}: network d_rel")
            bx.axhline(float(g["d_rel_closed"].mean()), ls="--", color=line[0].get_color(), lw=1,
                       label=f"{pair}: infinite width")
        bx.set(xscale="log", yscale="log", xlabel="width m", ylabel="d_rel = ||F_a - F_b|| / ||F_b||",
               title="MTL vs GBML distance: finite width (markers) vs closed form (dashed)")
        bx.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
