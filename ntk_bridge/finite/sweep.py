"""The width sweep: finite networks vs the closed forms of docs/theory.md, as the width grows.

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
from typing import TYPE_CHECKING, Callable

import numpy as np

from ntk_bridge.closed_form.distances import d_rel, relative_error
from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import PAIRS
from ntk_bridge.closed_form.tasks import FamilyConfig, TaskSet, make_tasks
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.errors import require
from ntk_bridge.finite.training import FINITE_METHODS, GDConfig
from ntk_bridge.stats import finite_mean_ci, fit_loglog

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
DEFAULT_METHODS = ("mtl-b", "mtl-a", "anil", "maml", "ntk", "head-only")   # FINITE_METHODS, in table order
DEFAULT_PAIRS = PAIRS + (("mtl-a", "head-only"),)   # and MTL-A's training-task influence
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
    methods: tuple[str, ...] = DEFAULT_METHODS
    inner_step: float = 0.2
    inner_steps: int = 5
    outer_time: float = 10.0
    lr_fraction: float = 0.5
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    dtype: str = "float64"

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
        require(self.dtype in ("float64", "float32"), f"dtype must be float64 or float32 (got {self.dtype!r})")
        _ = self.inner  # validates the inner step size and count

    @property
    def inner(self) -> InnerLoop:
        return InnerLoop(form="steps", step_size=float(self.inner_step), steps=int(self.inner_steps))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["net"] = asdict(self.net)
        d["family"] = asdict(self.family)
        return d


# ----------------------------------------------------------------------------- cost check

def n_params(spec: NetSpec, d: int, width: int, out_dim: int = 1) -> int:
    """Parameters of the FC network: weights d w + (L - 1) w^2 + w c, and the biases L w (if
    ``spec.b_std`` > 0) and c (if ``spec.readout_b_std`` > 0; stax leaves a zero-std bias out)."""
    w, depth = int(width), spec.depth
    biases = (depth * w if spec.b_std > 0 else 0) + (out_dim if spec.readout_b_std > 0 else 0)
    return d * w + (depth - 1) * w * w + w * out_dim + biases


def peak_bytes(config: WidthSweepConfig, width: int) -> int:
    """A lower estimate of the peak memory of training at ``width`` (bytes).

    Second-order MAML keeps, per training task, the k + 1 parameter copies of its inner loop and
    their cotangents: 2 n_train (k + 1) P words; ANIL and ntk about 4 P (params, gradient, the
    jit's copies), MTL 4 P plus n_train heads. Activations (n points x w per layer) are small.
    """
    p = n_params(config.net, config.family.d, width)
    word = 4 if config.dtype == "float32" else 8
    n, k = config.family.n_train_tasks, config.inner_steps
    words = max((2 * n * (k + 1) * p) if m == "maml" else (4 * p + 4 * n * width) for m in config.methods)
    return int(words * word)


def physical_memory() -> int:
    """Bytes of RAM of this machine (sysconf), or 0 when unknown."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_cost(config: WidthSweepConfig, memory: int | None = None) -> None:
    """Refuse, in one line and before any allocation, a sweep whose widest network cannot fit.

    The bound is :func:`peak_bytes` of the widest width against 80% of ``memory`` (default: this
    machine's RAM, :func:`physical_memory`).
    """
    memory = physical_memory() if memory is None else int(memory)
    if memory <= 0:
        return
    width = max(config.widths)
    need = peak_bytes(config, width)
    p = n_params(config.net, config.family.d, width)
    require(need <= 0.8 * memory,
            f"width {width} at depth {config.net.depth} needs about {need / 2**30:.3g} GiB to train "
            f"({p:.3g} parameters; {'maml keeps ' + str(2 * config.family.n_train_tasks * (config.inner_steps + 1)) + ' copies' if 'maml' in config.methods else 'a few copies'}), "
            f"more than 80% of this machine's {memory / 2**30:.3g} GiB; lower --widths"
            + (" or leave maml out of --methods" if "maml" in config.methods else ""))


# ----------------------------------------------------------------------------- interrupt granularity

CHUNK_BYTES = 1e10   # memory traffic of one jitted chunk of outer steps: about 2 s of one CPU core


def chunk_steps(config: WidthSweepConfig, method: str, width: int, most: int = 100) -> int:
    """Outer steps per jitted chunk, so that Ctrl-C (checked by Python between chunks) acts within
    seconds at every width: ``CHUNK_BYTES`` / (passes over the P parameters per step x P x word),
    between 1 and ``most``. Passes per step: about 3 (forward, backward) per point set for MTL /
    ntk, times (k + 1) inner steps for ANIL, times 2 (k + 1) per training task for second-order
    MAML. The chunk only splits the loop: every step computes the same numbers."""
    p = n_params(config.net, config.family.d, width)
    word = 4 if config.dtype == "float32" else 8
    n, k = config.family.n_train_tasks, config.inner_steps
    passes = {"maml": 6 * n * (k + 1), "anil": 3 * (k + 1)}.get(method, 3)
    return int(min(most, max(1, CHUNK_BYTES // (passes * p * word))))


# ----------------------------------------------------------------------------- schedule

def objective_kernel(method: str, tasks: TaskSet, gram: Kernels, inner: InnerLoop) -> np.ndarray:
    """The kernel of the outer objective's linear dynamics (docs/theory.md 4-5), for the step size.

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


def schedule(method: str, tasks: TaskSet, gram: Kernels, config: WidthSweepConfig) -> GDConfig:
    """The GDConfig of ``method``: S = ceil(t lam_max / fraction) steps of lr = t / S."""
    base = GDConfig(inner_step=config.inner_step, inner_steps=config.inner_steps, outer_lr=1.0, outer_steps=0,
                       dtype=config.dtype)
    if method == "head-only" or config.outer_time == 0:
        return base
    lam = float(np.linalg.eigvalsh(objective_kernel(method, tasks, gram, config.inner)).max())
    steps = max(1, int(math.ceil(config.outer_time * lam / config.lr_fraction)))
    return replace(base, outer_lr=config.outer_time / steps, outer_steps=steps)


def _at_width(tc: GDConfig, config: WidthSweepConfig, method: str, width: int) -> GDConfig:
    """``tc`` with the chunk of :func:`chunk_steps` at ``width`` (the numbers do not change)."""
    return replace(tc, chunk=chunk_steps(config, method, width, most=tc.chunk))


# ----------------------------------------------------------------------------- the sweep

def run(config: WidthSweepConfig, progress: bool = True,
        on_width: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
        store: "UnitStore | None" = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the sweep; returns (errors: one row per width x seed x method, pairs: per width x seed x pair).

    Widths run in increasing order; ``on_width(errors, pairs)``, if given, receives the rows so
    far after each width (the rows of the finished widths are exactly those of a sweep over those
    widths alone). With a ``store`` (:class:`UnitStore`), every finished (width, seed, method)
    unit is saved there at once and a unit already there is read instead of trained: an
    interrupted sweep resumes where it stopped and gives the rows of an uninterrupted one (its
    ``seconds`` are those of the run that trained the unit). A network whose training fails
    (diverges) gives a row with NaN errors and the one-line reason in ``failed``; the sweep goes on.
    """
    import pandas as pd
    from tqdm import tqdm

    draws = _draws(config)
    err_rows, pair_rows = [], []
    bar = tqdm(total=len(config.widths) * len(draws) * len(config.methods), disable=not progress,
               desc="width sweep", unit="run")
    for width in config.widths:
        for draw in draws:
            errs, prs = _one_network(config, width, draw, bar, store)
            err_rows += errs
            pair_rows += prs
        if on_width is not None:
            on_width(pd.DataFrame(err_rows), pd.DataFrame(pair_rows))
    bar.close()
    return pd.DataFrame(err_rows), pd.DataFrame(pair_rows)


@dataclass(frozen=True)
class _Draw:
    """One seed: its tasks, infinite-width kernels and per-method GDConfig."""

    seed: int
    tasks: TaskSet
    gram: Kernels
    schedules: dict


def _draws(config: WidthSweepConfig) -> list[_Draw]:
    """Task draw ``make_tasks(family, seed + s)``, its kernels and schedules, for each seed s."""
    from ntk_bridge.finite.closed import infinite_gram

    out = []
    for s in range(config.seeds):
        seed = config.seed + s
        tasks = make_tasks(config.family, seed)
        gram = infinite_gram(config.net, tasks)
        out.append(_Draw(seed, tasks, gram, {m: schedule(m, tasks, gram, config) for m in config.methods}))
    return out


@dataclass
class _Trained:
    """A method's finite predictions (None if training failed), closed form, t = 0 closed form."""

    net: np.ndarray | None
    closed: np.ndarray
    closed0: np.ndarray
    failed: str = ""
    net0: np.ndarray | None = None    # the network's predictions with no outer step (pairs' F_b(t = 0))


def _one_method(method: str, net, draw: _Draw, f0: np.ndarray, tc: GDConfig | None = None) -> tuple[dict, _Trained]:
    """Train one network with ``method`` (``tc``: its GDConfig, default the draw's schedule); its
    error row (NaN errors if training failed)."""
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.finite.closed import closed_form
    from ntk_bridge.finite.training import train_and_predict

    tasks, gram, tc = draw.tasks, draw.gram, tc or draw.schedules[method]
    start = time.perf_counter()
    try:
        res = train_and_predict(method, net, tasks, tc)
        preds, losses, failed = res.predictions, res.losses, ""
    except BridgeError as err:
        preds, losses, failed = None, np.zeros(0), str(err)
    seconds = time.perf_counter() - start
    cf = closed_form(method, tasks, gram, tc, f0)
    cf_flow = closed_form(method, tasks, gram, tc, f0, discrete=False)
    cf0 = closed_form(method, tasks, gram, tc, f0, outer_steps=0)
    transfer = np.linalg.norm(cf - cf0)
    nan = float("nan")
    ok = preds is not None
    row = dict(
        depth=net.spec.depth, width=net.width, seed=draw.seed, method=method,
        rel_error=d_rel(preds, cf) if ok else nan,
        rel_error_transfer=(np.linalg.norm(preds - cf) / transfer
                            if ok and transfer > 1e-12 * np.linalg.norm(cf) else nan),
        disc_gap=d_rel(cf_flow, cf),
        test_error_net=relative_error(preds, tasks.test_y_query()) if ok else nan,
        test_error_closed=relative_error(cf, tasks.test_y_query()),
        outer_lr=tc.outer_lr, outer_steps=tc.outer_steps,
        loss_initial=float(losses[0]) if losses.size else nan,
        loss_final=float(losses[-1]) if losses.size else nan, seconds=seconds, dtype=tc.dtype, failed=failed)
    return row, _Trained(preds, cf, cf0, failed)


def _one_network(config: WidthSweepConfig, width: int, draw: _Draw, bar,
                 store: "UnitStore | None" = None) -> tuple[list[dict], list[dict]]:
    """Every method at one (width, seed): error rows and pair rows (units read from / saved to ``store``)."""
    from ntk_bridge.finite.training import init_net, initial_outputs

    net = f0 = None
    rows, got = [], {}
    bases = {b for _, b in config.pairs}
    for method in config.methods:
        unit = store.get(width, draw.seed, method) if store is not None else None
        if unit is None:
            if net is None:
                net = init_net(config.net, width, draw.seed, config.family.d, config.family.n_train_tasks)
                f0 = initial_outputs(net, draw.tasks.points)
            tc = _at_width(draw.schedules[method], config, method, width)
            row, trained = _one_method(method, net, draw, f0, tc)
            if method in bases:
                trained.net0 = _untrained(method, net, draw, tc) if trained.net is not None else None
            unit = (row, trained)
            if store is not None:
                store.put(width, draw.seed, method, *unit)
        rows.append(unit[0])
        got[method] = unit[1]
        bar.update(1)
    pair_rows = []
    nan = float("nan")
    for a, b in config.pairs:
        if a not in got or b not in got:
            continue
        fa, fb = got[a], got[b]
        fin0 = fb.net0
        ok = fa.net is not None and fb.net is not None
        pair_rows.append(dict(
            depth=config.net.depth, width=width, seed=draw.seed, pair=f"{a} vs {b}",
            d_rel_net=d_rel(fa.net, fb.net) if ok else nan, d_rel_closed=d_rel(fa.closed, fb.closed),
            d_tr_net=_d_tr(fa.net, fb.net, fin0) if ok and fin0 is not None else nan,
            d_tr_closed=_d_tr(fa.closed, fb.closed, fb.closed0)))
    return rows, pair_rows


def _untrained(method: str, net, draw: _Draw, tc: GDConfig) -> np.ndarray | None:
    """The test predictions of ``method`` with no outer step (F_b(t = 0) of d_tr); None if that fails."""
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.finite.training import train_and_predict

    try:
        return train_and_predict(method, net, draw.tasks, replace(tc, outer_steps=0)).predictions
    except BridgeError:
        return None


# ----------------------------------------------------------------------------- resume

UNIT_SETTINGS = ("net", "family", "inner_step", "inner_steps", "outer_time", "lr_fraction", "pairs", "dtype")
_ROW_TEXT = ("method", "dtype", "failed")


class UnitStore:
    """Finished (width, seed, method) units of width sweeps, one file each, so that a sweep resumes.

    A unit depends on the settings :data:`UNIT_SETTINGS` (not on the list of widths, seeds or
    methods), so the store of a sweep lives in ``folder / key`` with ``key`` a hash of them
    (:meth:`for_config`). Each unit is ``w<width>-s<seed>-<method>.npz`` (written to a temp name
    and renamed: a kill never leaves half a unit) holding the error row (as valid JSON) and the
    predictions the pairs need: the trained network's, the closed form, the closed form at t = 0
    and, for a pair's second method, the network's with no outer step.
    """

    def __init__(self, folder) -> None:
        from pathlib import Path

        self.folder = Path(folder)

    @staticmethod
    def key(config: WidthSweepConfig) -> str:
        import hashlib

        from ntk_bridge.io import json_text

        d = config.as_dict()
        return hashlib.sha256(json_text({k: d[k] for k in UNIT_SETTINGS}).encode()).hexdigest()[:12]

    @classmethod
    def for_config(cls, root, config: WidthSweepConfig) -> "UnitStore":
        from pathlib import Path

        return cls(Path(root) / cls.key(config))

    def _path(self, width: int, seed: int, method: str):
        return self.folder / f"w{int(width)}-s{int(seed)}-{method}.npz"

    def __len__(self) -> int:
        return len(list(self.folder.glob("w*-s*-*.npz"))) if self.folder.is_dir() else 0

    def get(self, width: int, seed: int, method: str) -> tuple[dict, _Trained] | None:
        """The unit's (error row, predictions), or None if it is not there (or unreadable: retrained)."""
        import json
        import zipfile

        path = self._path(width, seed, method)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                row = dict(json.loads(str(z["row"])))          # [key, value] pairs: the row's column order
                arrays = {k: (np.array(z[k]) if k in z.files else None) for k in ("net", "closed", "closed0", "net0")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        row = {k: (float("nan") if v is None and k not in _ROW_TEXT else v) for k, v in row.items()}
        trained = _Trained(arrays["net"], arrays["closed"], arrays["closed0"], row.get("failed", ""))
        trained.net0 = arrays["net0"]
        return row, trained

    def put(self, width: int, seed: int, method: str, row: dict, trained: _Trained) -> None:
        from ntk_bridge.io import atomic_write, json_text

        arrays = {"row": np.array(json_text(list(row.items()))), "closed": trained.closed, "closed0": trained.closed0}
        arrays.update({k: v for k, v in (("net", trained.net), ("net0", trained.net0)) if v is not None})
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(width, seed, method), lambda fh: np.savez(fh, **arrays), mode="wb")


def _d_tr(fa: np.ndarray, fb: np.ndarray, fb0: np.ndarray) -> float:
    """||F_a - F_b|| / ||F_b - F_b(t=0)||, NaN when F_b learned nothing from the training tasks."""
    den = np.linalg.norm(fb - fb0)
    return float(np.linalg.norm(fa - fb) / den) if den > 1e-12 * max(np.linalg.norm(fb), 1e-300) else np.nan


# ----------------------------------------------------------------------------- summaries

def error_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of rel_error per method and width.

    Columns: method, width, seeds (n finite), failed (networks whose training failed),
    rel_error, rel_error_ci95 (t quantile, n - 1 dof), rel_error_transfer, disc_gap (max).
    """
    import pandas as pd
    rows = []
    for (method, width), g in errors.groupby(["method", "width"], sort=True):
        m, h, n, bad = finite_mean_ci(g["rel_error"])
        tr = g["rel_error_transfer"].to_numpy(np.float64)
        rows.append(dict(method=method, width=width, seeds=n, failed=bad, rel_error=m, rel_error_ci95=h,
                         rel_error_transfer=float(np.mean(tr[np.isfinite(tr)])) if np.isfinite(tr).any() else np.nan,
                         disc_gap=float(g["disc_gap"].max())))
    return pd.DataFrame(rows)


def slope_table(errors: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Log-log slope of error vs width per method: of the seed mean, and per seed (mean +- t 95%).

    ``slope_seed_mean`` / ``slope_seed_ci95``: one least-squares slope per seed over its widths,
    then the t interval over the ``seeds`` slopes. ``at_widest``: error at the widest width,
    mean +- t 95% over seeds. For the ("mtl-a", "head-only") pair the fitted quantity is MTL-A's
    training-task influence.
    """
    import pandas as pd
    rows = []
    series = [(m, g, "rel_error") for m, g in errors.groupby("method", sort=True)]
    if pairs is not None and len(pairs):
        infl = pairs[pairs["pair"] == "mtl-a vs head-only"]
        if len(infl):
            series.append(("mtl-a influence", infl, "d_rel_net"))
    for name, g, col in series:
        g = g[np.isfinite(g[col].to_numpy(np.float64)) & (g[col] > 0)]
        if g["width"].nunique() < 2:
            continue
        mean = g.groupby("width")[col].mean()
        slope, _ = fit_loglog(mean.index.values, mean.values)
        per_seed = [fit_loglog(s["width"].values, s[col].values)[0]
                    for _, s in g.groupby("seed") if s["width"].nunique() >= 2]
        sm, sh, n, _ = finite_mean_ci(per_seed)
        widest = g[g["width"] == g["width"].max()][col]
        wm, wh, _, _ = finite_mean_ci(widest)
        rows.append(dict(quantity=name, slope=slope, slope_seed_mean=sm, slope_seed_ci95=sh,
                         widest=int(g["width"].max()), at_widest=wm, at_widest_ci95=wh, seeds=n))
    return pd.DataFrame(rows)


def distance_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair and width: finite and closed-form distances, mean +- t 95% over the same seeds.

    Only seeds whose networks both trained enter either mean (``seeds``; ``failed`` counts the
    others), so the closed-form value beside the finite one is over the same draws. Columns
    ``X`` and ``X_ci95`` for X in d_rel_net, d_rel_closed, d_tr_net, d_tr_closed.
    """
    import pandas as pd
    cols = ["d_rel_net", "d_rel_closed", "d_tr_net", "d_tr_closed"]
    rows = []
    for (pair, width), g in pairs.groupby(["pair", "width"], sort=True):
        ok = g[np.isfinite(g["d_rel_net"].to_numpy(np.float64))]
        row = dict(pair=pair, width=width, seeds=len(ok), failed=len(g) - len(ok))
        for c in cols:
            row[c], row[f"{c}_ci95"], _, _ = finite_mean_ci(ok[c]) if len(ok) else (np.nan, np.nan, 0, 0)
        rows.append(row)
    return pd.DataFrame(rows)


INFLUENCE_PAIR = "mtl-a vs head-only"      # MTL-A's training-task influence: its own panel, its own axis


def _legend_below(ax, ncol: int = 2) -> None:
    """The legend under the axes, never over the data."""
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)


def _error_panel(ax, errors: pd.DataFrame, slope_of: dict) -> None:
    """rel_error = ||F_net - F_closed|| / ||F_closed|| vs width, per method, with fitted slopes."""
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
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"$\|F_{net}-F_{closed}\|\,/\,\|F_{closed}\|$")
    ax.set_title("finite network vs its closed form\n(mean, 95% t-interval over seeds)", fontsize=9)
    _legend_below(ax, ncol=3)


def _distance_panel(ax, dist: pd.DataFrame) -> None:
    """d_rel between MTL and GBML predictors: finite networks (o) and closed forms per width (x)."""
    for pair, g in dist[dist["pair"] != INFLUENCE_PAIR].groupby("pair", sort=True):
        line = ax.plot(g["width"], g["d_rel_net"], marker="o", ms=4, label=f"{pair}: networks")
        # the closed form carries each network's own f_0, so it changes with width: per width
        ax.plot(g["width"], g["d_rel_closed"], ls="--", marker="x", ms=4, color=line[0].get_color(), lw=1,
                label=f"{pair}: closed forms (same f_0)")
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"$d_{rel}=\|F_a-F_b\|\,/\,\|F_b\|$")
    ax.set_title("MTL vs GBML distance: networks (o)\nvs closed forms at each width (x, dashed)", fontsize=9)
    _legend_below(ax)


def _influence_panel(ax, dist: pd.DataFrame, slope_of: dict) -> None:
    """MTL-A's distance to head-only (0 at infinite width: MTL-A = head-only, docs/theory.md 5)."""
    g = dist[dist["pair"] == INFLUENCE_PAIR]
    ax.plot(g["width"], g["d_rel_net"], "k-o", ms=4,
            label=f"networks (slope {slope_of.get('mtl-a influence', np.nan):+.2f})")
    ax.set(xscale="log", yscale="log", xlabel="width m",
           ylabel=r"$\|F_{MTL\text{-}A}-F_{head}\|\,/\,\|F_{head}\|$")
    ax.set_title("MTL-A's training-task influence\n(its distance to head-only; 0 at infinite width)", fontsize=9)
    _legend_below(ax, ncol=1)


def plot(errors: pd.DataFrame, pairs: pd.DataFrame, slopes: pd.DataFrame, title: str):
    """Log-log panels, one quantity per axis: rel_error vs width; MTL-GBML d_rel (networks and closed
    forms); and, when measured, MTL-A's distance to head-only. Legends sit under the axes."""
    import textwrap

    import pandas as pd
    from matplotlib.figure import Figure

    dist = distance_table(pairs) if len(pairs) else pd.DataFrame(columns=["pair"])
    panels = [_error_panel] + ([_distance_panel] if (dist["pair"] != INFLUENCE_PAIR).any() else []) \
        + ([_influence_panel] if (dist["pair"] == INFLUENCE_PAIR).any() else [])
    fig = Figure(figsize=(5.2 * len(panels), 5.6), layout='constrained')
    axes = fig.subplots(1, len(panels), squeeze=False)
    slope_of = dict(zip(slopes["quantity"], slopes["slope"])) if len(slopes) else {}
    for ax, panel in zip(axes[0], panels):
        if panel is _error_panel:
            panel(ax, errors, slope_of)
        elif panel is _distance_panel:
            panel(ax, dist)
        else:
            panel(ax, dist, slope_of)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    return fig
