"""Presenting the regime map: the verdict table and the heatmap figure.

Reads only the per-cell summary of :func:`ntk_bridge.studies.regime_map.summarize_cells` (columns listed
there) and the :class:`ntk_bridge.studies.regime_map.Verdict` list; writes nothing itself.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from ntk_bridge.studies.regime_map import CLAIM_PAIRS, SHRINK_RATE, Verdict

# (column of the summary, pair it is read for, panel title)
PANELS = (
    ("rate_d_rel", "mtl-b vs anil", "deep rate of d_rel, MTL-B vs ANIL"),
    ("rate_d_rel", "mtl-b vs maml", "deep rate of d_rel, MTL-B vs MAML"),
    ("rate_d_tr", "mtl-b vs anil", "deep rate of d_tr, MTL-B vs ANIL"),
    ("rate_d_tr", "mtl-b vs maml", "deep rate of d_tr, MTL-B vs MAML"),
    ("gain_a_L1", "mtl-b vs anil", "gain of MTL-B over head-only, L = 1"),
    ("gain_a_Lmax", "mtl-b vs anil", "gain of MTL-B over head-only, L = L_max"),
    ("gain_b_Lmax", "mtl-b vs anil", "gain of ANIL over head-only, L = L_max"),
    ("gain_b_Lmax", "mtl-b vs maml", "gain of MAML over head-only, L = L_max"),
)


def verdict_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per cell x claim pair: holds, d_tr_shrinks, both_beat_head_only, reason."""
    return pd.DataFrame([{"cell": v.cell, "pair": v.pair, "holds": v.holds, "weak_holds": v.weak_holds,
                          "d_tr_shrinks": v.d_tr_shrinks, "d_rel_shrinks": v.d_rel_shrinks,
                          "both_beat_head_only": v.both_beat_head_only, "reason": v.reason()} for v in verdicts])


def _fmt(v: float, digits: int = 2) -> str:
    return "nan" if not np.isfinite(v) else f"{v:+.{digits}f}"


def _interval(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{_fmt(mean, digits)} (no interval)"
    return f"{_fmt(mean, digits)} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def verdict_lines(summary: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """The printed table: per cell and claim pair, the d_tr rate, both gains at L_max, the verdict."""
    table = summary[summary["pair"].isin(CLAIM_PAIRS)].merge(verdicts, on=["cell", "pair"])
    head = (f"{'cell':30s} {'pair':14s} {'d_rel rate':10s} {'d_tr rate [95% t]':22s} {'gain MTL-B @Lmax':24s} "
            f"{'gain GBML @Lmax':24s} verdict")
    lines = [head, "-" * len(head)]
    for r in table.itertuples():
        lines.append(f"{r.cell:30s} {r.pair:14s} {_fmt(r.rate_d_rel):10s} {_interval(r.rate_d_tr, r.rate_d_tr_lo, r.rate_d_tr_hi):22s} "
                     f"{_interval(r.gain_a_Lmax, r.gain_a_Lmax_lo, r.gain_a_Lmax_hi, 3):24s} "
                     f"{_interval(r.gain_b_Lmax, r.gain_b_Lmax_lo, r.gain_b_Lmax_hi, 3):24s} {r.reason}")
    return lines


def conclusion(verdicts: pd.DataFrame) -> str:
    """The one-sentence answer: which cells, if any, satisfy the strong form of the claim."""
    held, weak = verdicts[verdicts["holds"]], verdicts[verdicts["weak_holds"]]
    n = len(verdicts)
    weak_text = (f" The weak form (d_rel shrinks at least like L^{SHRINK_RATE:g} while both beat head-only) holds in "
                 f"{len(weak)} of {n}" + (" (" + ", ".join(f"{p}: {k}" for p, k in weak["pair"].value_counts().sort_index().items())
                                          + ") -- with gains over head-only that have mostly vanished at L_max (cells.csv, gain_a_retained)."
                                          if len(weak) else "."))
    return _strong_text(held, n) + weak_text


def _strong_text(held: pd.DataFrame, n: int) -> str:
    if held.empty:
        return (f"The strong form of the claim (d_tr shrinks with depth, at least like L^{SHRINK_RATE:g}, while MTL-B "
                f"and the GBML method both beat head-only at the deepest depth) holds in none of the {n} cell x pair "
                "combinations of this grid.")
    which = ", ".join(f"{r.cell} ({r.pair})" for r in held.itertuples())
    return f"The strong form of the claim holds in {len(held)} of {n} cell x pair combinations: {which}."


def verdicts_text(summary: pd.DataFrame, verdicts: pd.DataFrame, title: str) -> str:
    """The verdict table of a regime map as text: the rates and gains per cell, failed depths, the
    conclusion (what ``ntk-bridge regime-map`` prints)."""
    lines = [f"\nRegime map: {title}",
             "rates: mean over draws of the per-draw slope of log distance vs log L at depth, [95% t-interval]; "
             "gain = err(head-only) - err(method), err = ||F - Y||^2 / ||Y||^2, mean [95% t-interval over draws]\n",
             *verdict_lines(summary, verdicts)]
    failed = summary[summary["failed_depths"] > 0]
    if not failed.empty:
        lines.append(f"\nCells with failed depths (numbers NaN there): {', '.join(sorted(set(failed['cell'])))}")
    lines.append("\n" + conclusion(verdicts))
    return "\n".join(lines)


def _grid(summary: pd.DataFrame, column: str, pair: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Matrix (net x inner rows, outer-time columns) of ``column`` for ``pair``."""
    g = summary[summary["pair"] == pair]
    rows = list(dict.fromkeys(f"{n} / {i}" for n, i in zip(g["net"], g["inner"])))
    cols = sorted(g["outer_time"].unique(), key=lambda t: (math.isinf(t), t))
    m = np.full((len(rows), len(cols)), np.nan)
    for r in g.itertuples():
        m[rows.index(f"{r.net} / {r.inner}"), cols.index(r.outer_time)] = getattr(r, column)
    return m, rows, [f"t={t:g}" for t in cols]


def _text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell's colour below 0.45)."""
    r, g, b = rgba[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 else "black"


def _heatmap(ax, m, rows, cols, title, show_rows: bool, lim: float):
    """One panel; returns the image (for the colour bar). Cell text is contrast-aware."""
    im = ax.imshow(m, cmap="RdBu_r" if title.startswith("deep rate") else "RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(m):
        colour = _text_colour(im.cmap(im.norm(v))) if np.isfinite(v) else "black"
        ax.text(j, i, "fail" if not np.isfinite(v) else f"{v:+.2f}", ha="center", va="center", fontsize=7.5,
                color=colour)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows if show_rows else [""] * len(rows), fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(title, 38)), fontsize=9)
    return im


ROW_LABELS = ("deep rate (log-log slope vs L; < 0 shrinks, blue)", "gain over head-only (> 0 better, blue)")


def plot(summary: pd.DataFrame, title: str):
    """Eight heatmaps (rows: network / inner loop, columns: outer time): deep rates and gains, with
    one colour bar per row of panels (the rates share one scale, the gains another)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 11), layout='constrained')
    axes = fig.subplots(2, 4)
    grids = [_grid(summary, column, pair) for column, pair, _ in PANELS]
    lims = {}                                   # one colour scale for the rate panels, one for the gains
    for (column, _, _), (m, _, _) in zip(PANELS, grids):
        kind = column.split("_")[0]
        finite = np.abs(m[np.isfinite(m)])
        lims[kind] = max(lims.get(kind, 1e-12), float(finite.max()) if finite.size else 1.0)
    images = []
    for k, (ax, (column, _, name), (m, rows, cols)) in enumerate(zip(axes.flat, PANELS, grids)):
        images.append(_heatmap(ax, m, rows, cols, name, show_rows=k % 4 == 0, lim=lims[column.split("_")[0]]))
    for row, label in enumerate(ROW_LABELS):
        fig.colorbar(images[4 * row], ax=axes[row, :], shrink=0.9, pad=0.01, aspect=30).set_label(label, fontsize=9)
    fig.suptitle("\n".join(textwrap.wrap(
        f"Regime map of MTL vs GBML kernel predictors: {title}. Rates: slope of log mean distance vs log L "
        "(blue: shrinks). Gains: err(head-only) - err(method) (blue: better than head-only).", 150)), fontsize=10)
    return fig


def law_comparison_text(table: pd.DataFrame, heading: str) -> str:
    """The depth law (docs/theory.md 8) beside the exact predictors for one cell: one block per depth,
    predicted and measured mean (sd) over draws and the largest per-draw relative gap. A depth outside the
    derivation's conditions carries its label (``condition``: "outside: shallow", "outside: below the bias
    onset", "transition"); a prediction whose informative amplitude is read from the previous depth says
    "carried over from the measured depth L0" (``carried_from``)."""
    lines = [f"\nDepth law vs measured: {heading}",
             "predicted: ntk_bridge.studies.depth_law (nothing fitted; a 'floor' is the constant part, derived; the "
             "informative part's amplitude is NOT derived: it is carried over from the measured previous depth L0 "
             "by the derived depth profile, and adds to the floor in quadrature); mean (sd) over draws; gap = max "
             "over draws of |measured - predicted| / |measured|"]
    for depth, g in table.groupby("depth", sort=True):
        condition = str(g["condition"].iloc[0]) if "condition" in g and isinstance(g["condition"].iloc[0], str) else ""
        lines.append(f"\n  L = {depth}" + (f"   [{condition}]" if condition else ""))
        for r in g.itertuples():
            pred = "n/a (first depth)" if not np.isfinite(r.predicted) else f"{r.predicted:+.4g} ({r.predicted_sd:.2g})"
            source = getattr(r, "carried_from", math.nan)
            note = (f"   (amplitude carried over from the measured depth L0 = {int(source)})"
                    if isinstance(source, (int, float)) and np.isfinite(source) else "")
            lines.append(f"    {r.quantity:42s} predicted {pred:22s} measured {r.measured:+.4g} ({r.measured_sd:.2g})"
                         f"   gap {r.max_rel_gap:.2g}{note}")
    return "\n".join(lines)
