"""The report's figures (``figures/report_*.png``): distance vs depth, error vs width, kernel vs
trained accuracy. Each function takes loaded tables and returns a matplotlib ``Figure`` built
without pyplot, so calling it never switches or touches the user's backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ntk_bridge.report.loading import Loaded


def figure_depth(depth: Loaded, kernel: Loaded):
    """d_rel vs depth: synthetic (mean and 25-75% over draws) and real Omniglot tasks (FC kernel)."""
    fig = Figure(figsize=(9.0, 4.6), layout='constrained')
    ax = fig.subplots(1, 1)
    if depth.data:
        f = depth.data["frame"]
        for pair, g in f.groupby("pair", sort=True):
            st = g.groupby("depth")["d_rel"]
            m = st.mean()
            ax.plot(m.index, m.values, marker="o", label=f"synthetic: {pair}")
            ax.fill_between(m.index, st.quantile(0.25).values, st.quantile(0.75).values, alpha=0.15)
    if kernel.data:
        d = kernel.data["distances"]
        for (pair, shots), g in d[d["kernel"] == "fc"].groupby(["pair", "shots"], sort=True):
            ax.plot(g["depth"], g["d_rel"], marker="s", linestyle="--", label=f"Omniglot {shots}-shot: {pair}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel(r"$d_{rel}=\|F_{MTL}-F_{GBML}\|/\|F_{GBML}\|$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("MTL vs GBML kernel predictors vs depth (synthetic: mean over draws, band 25-75%;\n"
                 "Omniglot: over all test queries' class scores, FC kernel)", fontsize=9)
    return fig


def figure_width(widths: list[Loaded]):
    """Relative error of trained networks vs closed forms, per method and width (log-log): one panel per
    width sweep, at most three per row (readable at page width), one legend for all under the panels."""
    ok = [w for w in widths if w.data]
    ncols = min(3, max(1, len(ok)))
    nrows = max(1, math.ceil(len(ok) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.8), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(sorted({m for w in ok for m in w.data["table"]["method"]}))}
    for ax, w in zip(axes.flat, ok):
        t = w.data["table"]
        for m, g in t.groupby("method", sort=True):
            ax.errorbar(g["width"], g["rel_error"], yerr=np.minimum(g["rel_error_ci95"], 0.95 * g["rel_error"]),
                        marker="o", ms=3, capsize=2, label=m, color=colors[m])
        ws = np.array(sorted(t["width"].unique()), float)
        ref = t[t["width"] == ws.min()]["rel_error"].mean()
        ax.plot(ws, ref * (ws / ws.min()) ** -0.5, "k:", label="slope -1/2")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width", fontsize=9)
        ax.set_ylabel(r"$\|F_{net}-F_{closed}\|/\|F_{closed}\|$", fontsize=9)
        ax.set_title(f"{Path(w.path).name}: depth {w.data['config'].get('net', {}).get('depth', '?')}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(ok):]:
        ax.set_visible(False)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=9,
                   frameon=False)
    fig.suptitle("Finite networks trained by gradient descent vs their closed forms (mean +- 95% t-interval "
                 "over seeds)", fontsize=10)
    return fig


def _short_source(source: str) -> str:
    return Path(str(source)).name


def figure_accuracy(chosen: pd.DataFrame, trained: pd.DataFrame):
    """Omniglot 5-way test accuracy: each kernel predictor at its depth chosen on validation episodes
    (``chosen``, from :func:`kernel_depth_choice`) beside the trained networks (best-validation states)."""
    shots_list = sorted(set(trained["shots"]) | (set(chosen["shots"]) if len(chosen) else set()))
    rows = [len(chosen[chosen["shots"] == s]) + len(trained[trained["shots"] == s]) for s in shots_list] or [1]
    fig = Figure(figsize=(11, 1.2 + 0.19 * max(rows)))
    axes = fig.subplots(1, max(1, len(shots_list)), squeeze=False)
    for ax, shots in zip(axes[0], shots_list):
        labels, vals, errs, colors = [], [], [], []
        mine = chosen[chosen["shots"] == shots] if len(chosen) else chosen.iloc[0:0]
        for r in (mine.sort_values(["kernel", "method"], ascending=False).itertuples() if len(mine) else ()):
            how = "val" if r.chosen_by == "validation" else "fixed"
            labels.append(f"{r.kernel} {r.method} (L={int(r.depth)}, {how})")
            vals.append(r.acc_mean)
            errs.append(r.acc_ci95)
            colors.append("C0" if r.kernel == "fc" else "C2")
        for r in trained[trained["shots"] == shots].sort_values(["source", "algorithm"], ascending=False).itertuples():
            labels.append(f"{r.algorithm} ({_short_source(r.source)})")
            vals.append(r.acc)
            errs.append(r.ci95)
            colors.append("C1")
        y = np.arange(len(labels))
        ax.barh(y, vals, xerr=errs, color=colors, capsize=1.5, height=0.75, error_kw={"lw": 0.8})
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.axvline(20.0, color="grey", lw=0.8, linestyle=":")
        ax.set_xlim(0, 100)
        ax.set_xlabel("5-way test accuracy % (mean +- 95% CI over test episodes)", fontsize=8)
        ax.set_title(f"Omniglot {shots}-shot", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Kernel predictors (blue FC, green conv) at the depth chosen on validation episodes "
                 "(val; 'fixed' = smallest depth, no validation run)\nvs trained networks (orange, best-validation "
                 "checkpoints); dotted line: chance", fontsize=8.5)
    fig.tight_layout()
    return fig
