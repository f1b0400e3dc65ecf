"""The depth study: distance between MTL and GBML kernel predictors as the network deepens.

For each random task draw, the kernels on every point are computed once for all depths
(:func:`ntk_bridge.engine.fc.depth_sweep`); at each depth every method of
:mod:`ntk_bridge.closed_form.predictors` predicts the test queries, and each pair of methods is compared
with d_rel and d_tr (docs/theory.md section 6). Each method's own test error is recorded next to the
distance, with the head-only baseline K T' Y', because a distance between two predictors that
have both stopped learning from the training tasks says nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ntk_bridge.closed_form.distances import d_rel, d_tr, relative_error
from ntk_bridge.closed_form.predictors import PAIRS, PredictorConfig, adaptation_only, predict
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import require
from ntk_bridge.stats import fit_loglog, mean_ci

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DEFAULT_PAIRS = PAIRS


@dataclass(frozen=True)
class DepthStudyConfig:
    depths: tuple[int, ...] = DEFAULT_DEPTHS
    draws: int = 20
    seed: int = 0
    net: NetSpec = field(default_factory=NetSpec)
    family: FamilyConfig = field(default_factory=FamilyConfig)
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(outer_ridge=1e-6))
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS

    def __post_init__(self):
        require(len(self.depths) >= 1 and min(self.depths) >= 1,
                f"depths must be integers >= 1 (got {list(self.depths)})")
        require(isinstance(self.draws, int) and self.draws >= 1, f"draws must be >= 1 (got {self.draws!r})")
        for _, b in self.pairs:
            require(b in ("anil", "maml"), f"the second method of a pair must be a GBML method (anil or maml); got {b!r}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["predictor"] = self.predictor.as_dict()
        return d


def methods_of(config: DepthStudyConfig) -> list[str]:
    """Every method the study predicts with: the pairs' methods plus the head-only baseline."""
    seen: list[str] = []
    for m in [x for pair in config.pairs for x in pair] + ["head-only"]:
        if m not in seen:
            seen.append(m)
    return seen


def run_draw(config: DepthStudyConfig, draw: int) -> list[dict]:
    """All rows (one per depth x pair) for one task draw, seeded by ``config.seed + draw``."""
    tasks = make_tasks(config.family, config.seed + draw)
    kernels = depth_sweep(config.net, tasks.points, depths=config.depths)
    return rows_from_kernels(config, tasks, kernels, draw)


def rows_at_depth(config: DepthStudyConfig, tasks, gram, depth: int, draw: int) -> list[dict]:
    """One row per pair at one depth: d_rel, d_tr, both methods' test errors and head-only's."""
    y = tasks.test_y_query()
    preds = {m: predict(m, tasks, gram, config.predictor) for m in methods_of(config)}
    errors = {m: relative_error(p, y) for m, p in preds.items()}
    rows = []
    for a, b in config.pairs:
        base = adaptation_only(b, tasks, gram, config.predictor)
        rows.append({
            "depth": depth, "pair": f"{a} vs {b}", "draw": draw,
            "d_rel": d_rel(preds[a], preds[b]), "d_tr": d_tr(preds[a], preds[b], base),
            "method_a": a, "method_b": b, "err_a": errors[a], "err_b": errors[b],
            "err_head_only": errors["head-only"],
        })
    return rows


def rows_from_kernels(config: DepthStudyConfig, tasks, kernels: dict, draw: int) -> list[dict]:
    """Rows depth x pair for one draw whose kernels ``{depth: Kernels}`` are already computed."""
    return [row for depth in sorted(kernels) for row in rows_at_depth(config, tasks, kernels[depth], depth, draw)]


def run(config: DepthStudyConfig, progress: bool = True) -> pd.DataFrame:
    """Rows depth x pair x draw with columns depth, pair, draw, d_rel, d_tr, err_a, err_b, err_head_only."""
    import pandas as pd
    from tqdm import tqdm

    rows: list[dict] = []
    for draw in tqdm(range(config.draws), desc="task draws", disable=not progress, unit="draw"):
        rows += run_draw(config, draw)
    return pd.DataFrame(rows)


DEEP_DEPTH = 16          # the deep-regime rate is fitted on depths >= this


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair: mean distances at the smallest and largest depth and the fitted log-log rates.

    Columns: pair, depth_lo, depth_hi, d_rel_lo, d_rel_hi, d_tr_lo, d_tr_hi; with two depths or
    more also rate_d_rel, rate_d_tr (slopes of log mean distance vs log depth); and
    ``rate_d_rel_L>=16`` (the same slope over depths >= 16 only) only when at least two depths
    are >= 16 -- otherwise the column is absent rather than a column of NaN.
    """
    import pandas as pd
    out = []
    for pair, g in frame.groupby("pair", sort=False):
        by_depth = g.groupby("depth")[["d_rel", "d_tr"]].mean()
        lo, hi = by_depth.index.min(), by_depth.index.max()
        row = {"pair": pair, "depth_lo": lo, "depth_hi": hi,
               "d_rel_lo": by_depth.loc[lo, "d_rel"], "d_rel_hi": by_depth.loc[hi, "d_rel"],
               "d_tr_lo": by_depth.loc[lo, "d_tr"], "d_tr_hi": by_depth.loc[hi, "d_tr"]}
        if len(by_depth) >= 2:
            row["rate_d_rel"] = fit_loglog(by_depth.index, by_depth["d_rel"])[0]
            row["rate_d_tr"] = fit_loglog(by_depth.index, by_depth["d_tr"])[0]
            deep = by_depth[by_depth.index >= DEEP_DEPTH]
            if len(deep) >= 2:
                row[f"rate_d_rel_L>={DEEP_DEPTH}"] = fit_loglog(deep.index, deep["d_rel"])[0]
        out.append(row)
    return pd.DataFrame(out)


def error_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per depth and method: mean test error (||F - Y||^2 / ||Y||^2) with 95% CI over draws.

    Columns depth, method, err_mean, err_ci95, draws; the half-width is
    :func:`ntk_bridge.stats.mean_ci`'s (t quantile, ddof 1): NaN for one draw, and a NaN error in
    any draw makes that cell NaN (never dropped).
    """
    import pandas as pd
    parts = []
    for col_m, col_e in (("method_a", "err_a"), ("method_b", "err_b")):
        parts.append(frame[["depth", "draw", col_m, col_e]].rename(columns={col_m: "method", col_e: "err"}))
    head = frame[["depth", "draw", "err_head_only"]].rename(columns={"err_head_only": "err"})
    head["method"] = "head-only"
    long = pd.concat(parts + [head]).drop_duplicates(["depth", "draw", "method"])
    rows = []
    for (depth, method), g in long.groupby(["depth", "method"]):
        mean, half = mean_ci(g["err"])
        rows.append({"depth": depth, "method": method, "err_mean": mean, "err_ci95": half, "draws": len(g)})
    return pd.DataFrame(rows)


def plot(frame: pd.DataFrame, errors: pd.DataFrame, title: str):
    """Figure: d_rel and d_tr vs depth (mean, 25-75% band over draws), and test errors vs depth."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.3))
    axes = fig.subplots(1, 3)
    for ax, metric, label in ((axes[0], "d_rel", r"$d_{rel}=\|F_a-F_b\|/\|F_b\|$"),
                              (axes[1], "d_tr", r"$d_{tr}=\|F_a-F_b\|/\|F_b-F_b(t{=}0)\|$")):
        for pair, g in frame.groupby("pair", sort=False):
            stats = g.groupby("depth")[metric]
            mean = stats.mean()
            ax.plot(mean.index, mean.values, marker="o", label=pair)
            ax.fill_between(mean.index, stats.quantile(0.25).values, stats.quantile(0.75).values, alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth L (hidden layers)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{metric}: mean over draws, band 25-75% of draws", fontsize=9)
    ax = axes[2]
    order = sorted(errors["method"].unique(), key=lambda m: m == "head-only")  # baseline drawn on top
    for method in order:
        g = errors[errors["method"] == method]
        style = dict(color="k", linestyle="--", marker="x", zorder=5) if method == "head-only" else dict(marker="o")
        ax.errorbar(g["depth"], g["err_mean"], yerr=g["err_ci95"], capsize=2, label=method, **style)
    ax.axhline(1.0, color="grey", lw=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel(r"test error $\|F-Y\|^2/\|Y\|^2$ (1 = predict zero)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("test error: mean +- 95% t-interval over draws\n(mtl-a equals head-only: drawn under it)", fontsize=9)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 140)), fontsize=10)
    fig.tight_layout()
    return fig
