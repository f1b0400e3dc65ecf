"""The width axis at depth: per-depth width sweeps combined.

Each folder written by ``ntk-bridge width-sweep`` holds one depth (config.json, errors.csv,
pairs.csv, run.json). :func:`main` reads a root folder and its sub-folders and writes

- ``at_depth.csv``: one row per depth x width x (quantity, subject): ``rel_error`` of each method
  (network vs its own closed form) and ``d_rel_net``, ``d_rel_closed``, ``d_tr_net``,
  ``d_tr_closed`` of each MTL-GBML pair, each as mean +- 95% t-interval over the seeds (n of
  them; only seeds whose networks trained; ``failed`` counts the others), and the paired gaps
  ``d_rel_gap`` / ``d_tr_gap`` = finite - closed per seed (mean +- t 95%: the draw-to-draw spread,
  which both share, cancels in it), with the protocol
  columns that differ between depths (inner step size, dtype, outer time) and the source folder;
- ``at_depth_slopes.csv``: per depth and method, the log-log slope of rel_error vs width (per
  seed, mean +- t 95% over seeds; and of the seed mean), the error at the widest width and the
  first width where the seed-mean error is below 0.1 (NaN: never, within the widths run);
- the figure: rel_error vs width with one curve per depth (a panel per method), and the finite
  d_rel / d_tr of MTL-B vs ANIL and MTL-B vs MAML beside the closed form drawn per width (the
  closed form carries each network's f_0, so it changes with width; per width it is the mean
  over the same seeds as the finite value).

A folder whose run.json says ``"complete": false`` (a sweep still running or stopped) is used
for the widths it finished and marked ``complete = False`` in both tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.errors import require
from ntk_bridge.io import read_json
from ntk_bridge.stats import finite_mean_ci, fit_loglog

log = logging.getLogger(__name__)

METHODS = ("mtl-a", "mtl-b", "anil", "maml")
PAIRS = ("mtl-b vs anil", "mtl-b vs maml")
DISTANCES = ("d_rel_net", "d_rel_closed", "d_tr_net", "d_tr_closed")
REGIME_ERROR = 0.1


@dataclass(frozen=True)
class Sweep:
    """One width-sweep folder: its depth, saved config, rows and completion."""

    folder: Path
    depth: int
    config: dict
    errors: pd.DataFrame
    pairs: pd.DataFrame
    complete: bool
    seconds: float
    folders: int = 1


def sweep_folders(root: Path) -> list[Path]:
    """``root``, its sub-folders and theirs (two levels) that hold an errors.csv and a config.json."""
    root = Path(root)
    require(root.is_dir(), f"--out {root} is not a folder of width sweeps; run width-sweep first")
    subs = sorted(p for p in root.iterdir() if p.is_dir())
    cands = [root] + sorted(subs + [q for p in subs for q in p.iterdir() if q.is_dir()])
    found = [p for p in cands if (p / "errors.csv").is_file() and (p / "config.json").is_file()]
    require(found, f"no width sweep (errors.csv + config.json) in {root} or its sub-folders; run width-sweep first")
    return found


def load(folder: Path) -> Sweep:
    """Read one sweep folder. A run.json without ``complete`` is a finished run of older code."""
    folder = Path(folder)
    config = read_json(folder / "config.json", "rerun that width sweep")
    run = read_json(folder / "run.json", "rerun that width sweep") if (folder / "run.json").is_file() else {}
    errors = pd.read_csv(folder / "errors.csv")
    pairs = pd.read_csv(folder / "pairs.csv") if (folder / "pairs.csv").is_file() else pd.DataFrame()
    complete = bool(run.get("complete", "rows" in run))
    depths = set(errors["depth"].astype(int))
    require(depths == {int(config["net"]["depth"])},
            f"{folder}: errors.csv holds depths {sorted(depths)} but config.json says {config['net']['depth']}")
    return Sweep(folder, int(config["net"]["depth"]), config, errors, pairs, complete,
                 float(run.get("seconds", float("nan"))))


PROTOCOL_KEYS = ("inner_step", "inner_steps", "outer_time", "lr_fraction", "dtype", "family", "net")


def merge(sweeps: list[Sweep]) -> list[Sweep]:
    """One Sweep per depth: folders of one depth (e.g. depth8/ with widths 64-256 and the per-(width,
    seed) folders of depth8_wide/) are joined when their protocol is the same; a (width, seed, method)
    in two folders, or two protocols at one depth, is refused in one line."""
    out = []
    for depth in sorted({s.depth for s in sweeps}):
        group = [s for s in sweeps if s.depth == depth]
        first = group[0]
        for s in group[1:]:
            for k in PROTOCOL_KEYS:
                require(s.config.get(k) == first.config.get(k),
                        f"depth {depth}: {s.folder} and {first.folder} differ in {k}; keep one protocol per depth")
        errors = pd.concat([s.errors for s in group], ignore_index=True)
        dup = errors[errors.duplicated(["width", "seed", "method"])]
        if not dup.empty:
            w, seed, method = dup.iloc[0][["width", "seed", "method"]]
            require(False, f"depth {depth}: width {w}, seed {seed}, {method} appears in two folders; remove one")
        pairs = pd.concat([s.pairs for s in group if len(s.pairs)], ignore_index=True) if any(len(s.pairs) for s in group) \
            else pd.DataFrame()
        out.append(Sweep(first.folder, depth, first.config, errors, pairs, all(s.complete for s in group),
                         float(sum(s.seconds for s in group)), len(group)))
    return out


def _protocol(s: Sweep) -> dict:
    c = s.config
    return dict(inner_step=float(c["inner_step"]), inner_steps=int(c["inner_steps"]),
                outer_time=float(c["outer_time"]), lr_fraction=float(c["lr_fraction"]),
                dtype=c.get("dtype", "float64"), complete=s.complete,
                source=str(s.folder) if s.folders == 1 else f"{s.folder} (+{s.folders - 1} folders)")


def tidy(sweeps: list[Sweep]) -> pd.DataFrame:
    """The at_depth.csv rows (see the module docstring), sorted by depth, quantity, subject, width."""
    rows = []
    for s in sweeps:
        proto = _protocol(s)
        for (method, width), g in s.errors.groupby(["method", "width"], sort=True):
            m, h, n, bad = finite_mean_ci(g["rel_error"])
            rows.append(dict(depth=s.depth, width=int(width), quantity="rel_error", subject=method,
                             mean=m, ci95=h, n=n, failed=bad, **proto))
        if not len(s.pairs):
            continue
        for (pair, width), g in s.pairs.groupby(["pair", "width"], sort=True):
            ok = g[np.isfinite(g["d_rel_net"].to_numpy(np.float64))]
            gaps = {f"{q}_gap": ok[f"{q}_net"] - ok[f"{q}_closed"] for q in ("d_rel", "d_tr")}
            for q in DISTANCES + tuple(gaps):
                m, h, n, _ = finite_mean_ci(gaps[q] if q in gaps else ok[q])
                rows.append(dict(depth=s.depth, width=int(width), quantity=q, subject=pair, mean=m, ci95=h,
                                 n=n, failed=len(g) - len(ok), **proto))
    out = pd.DataFrame(rows)
    return out.sort_values(["depth", "quantity", "subject", "width"], kind="stable").reset_index(drop=True)


def slopes(sweeps: list[Sweep]) -> pd.DataFrame:
    """Per depth x method: slope of log rel_error vs log width (per seed: mean +- t 95%)."""
    rows = []
    for s in sweeps:
        for method, g in s.errors.groupby("method", sort=True):
            g = g[np.isfinite(g["rel_error"].to_numpy(np.float64))]
            if g["width"].nunique() < 2:
                continue
            mean = g.groupby("width")["rel_error"].mean()
            slope_mean, _ = fit_loglog(mean.index.values, mean.values)
            per_seed = [fit_loglog(x["width"].values, x["rel_error"].values)[0]
                        for _, x in g.groupby("seed") if x["width"].nunique() >= 2]
            sm, sh, n, _ = finite_mean_ci(per_seed)
            widest = int(g["width"].max())
            wm, wh, wn, _ = finite_mean_ci(g[g["width"] == widest]["rel_error"])
            below = mean[mean < REGIME_ERROR]
            last = mean.iloc[-2:]
            rows.append(dict(depth=s.depth, method=method, widths=f"{int(mean.index.min())}-{widest}",
                             n_widths=len(mean), slope_seed_mean=sm, slope_seed_ci95=sh, seeds=n,
                             slope_of_mean=slope_mean,
                             last_slope=float(np.log(last.iloc[1] / last.iloc[0]) / np.log(last.index[1] / last.index[0])),
                             widest=widest, at_widest=wm, at_widest_ci95=wh,
                             width_error_below_0p1=int(below.index.min()) if len(below) else np.nan,
                             seconds_total=float(s.errors["seconds"].sum()), run_seconds=s.seconds,
                             **_protocol(s)))
    return pd.DataFrame(rows).sort_values(["method", "depth"], kind="stable").reset_index(drop=True)


def title(sweeps: list[Sweep]) -> str:
    """Data and protocol of the combined figure, with what differs per depth."""
    c = sweeps[0].config
    fam, net = c["family"], c["net"]
    per_depth = "; ".join(f"L={s.depth}: a={float(s.config['inner_step']):.3g}, {s.config.get('dtype', 'float64')}, "
                          f"{s.errors['seed'].nunique()} seeds" for s in sweeps)
    return (f"Finite FC {net['activation']} nets (NTK param., W_std={float(net['W_std']):.3g}, no bias) vs their closed forms; "
            f"{fam['family']} tasks d={fam['d']}, {fam['n_train_tasks']} train / {fam['n_test_tasks']} test tasks, "
            f"n_q={fam['n_query']}, n_s={fam['n_support']}; inner {c['inner_steps']} GD steps of size a; "
            f"outer full-batch GD, eta*t={float(c['outer_time']):g}, lr*lam_max={float(c['lr_fraction']):g}\n"
            f"per depth: {per_depth}; mean +- 95% t-interval over seeds (draw + init)")


def plot(table: pd.DataFrame, slope_rows: pd.DataFrame, heading: str):
    """2 x 4 log-log panels: rel_error per method; d_rel and d_tr of each pair, finite vs closed."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(20, 9))
    axes = fig.subplots(2, 4)
    depths = sorted(table["depth"].unique())
    colors = {d: colormaps["tab10"](i % 10) for i, d in enumerate(depths)}
    slope_of = {(r.depth, r.method): (r.slope_seed_mean, r.slope_seed_ci95) for r in slope_rows.itertuples()}
    for ax, method in zip(axes[0], METHODS):
        for d in depths:
            g = table[(table["depth"] == d) & (table["quantity"] == "rel_error") & (table["subject"] == method)]
            if not len(g):
                continue
            sm, sh = slope_of.get((d, method), (np.nan, np.nan))
            ax.errorbar(g["width"], g["mean"], yerr=np.minimum(g["ci95"].fillna(0), 0.95 * g["mean"]),
                        marker="o", ms=4, capsize=2, color=colors[d], label=f"depth {d}: slope {sm:+.2f} +- {sh:.2f}")
        ax.axhline(REGIME_ERROR, color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="width m", title=f"{method}: ||F_net - F_closed|| / ||F_closed||")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    panels = [(p, q) for q in ("d_rel", "d_tr") for p in PAIRS]
    for ax, (pair, q) in zip(axes[1], panels):
        for d in depths:
            sel = (table["depth"] == d) & (table["subject"] == pair)
            net, closed = table[sel & (table["quantity"] == f"{q}_net")], table[sel & (table["quantity"] == f"{q}_closed")]
            if not len(net):
                continue
            # seed means only: the seed spread is the draw-to-draw spread, shared by both curves
            ax.plot(net["width"], net["mean"], marker="o", ms=4, color=colors[d], label=f"depth {d}: finite network")
            ax.plot(closed["width"], closed["mean"], ls="--", marker="x", ms=5, color=colors[d],
                    label=f"depth {d}: closed form, same seeds")
        ax.set(xscale="log", yscale="log", xlabel="width m",
               title=f"{q}({pair.replace(' vs ', ', ')}): finite (o), closed (x)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig


REGIME_CSV = Path("experiments/results/regime_map/regime_map.csv")


def needed_figure(figure) -> Path:
    """figures/width_at_depth.png -> figures/width_at_depth_needed.png."""
    figure = Path(figure)
    return figure.with_name(f"{figure.stem}_needed{figure.suffix}")


def width_needed(sweeps: list[Sweep], root: Path, figure, regime_csv: Path = REGIME_CSV) -> pd.DataFrame:
    """The joint fit over width and depth (ntk_bridge.finite.width_law) -> OUT/at_depth_joint_fit.csv, and with
    the regime map's closed-form distance d(L) (if ``regime_csv`` exists) the width w*(L) -> the figure."""
    from ntk_bridge.finite import width_law
    from ntk_bridge.io import save_figure, write_csv

    errors = pd.concat([s.errors for s in sweeps], ignore_index=True)
    fits = width_law.joint_fit(errors)
    if fits.empty:
        log.info("\njoint fit over width and depth: needs >= 2 depths with >= 2 seeds; skipped")
        return fits
    write_csv(root / "at_depth_joint_fit.csv", fits)
    log.info(f"\njoint fit log e = k + a log w + b log L per seed (rows with w/L >= {width_law.MIN_RATIO:g}), mean +- t 95%; "
          f"hypothesis e = c (w/L)^-1/2 (a = -1/2, b = +1/2):")
    for r in fits.itertuples():
        log.info(f"  {r.method:6s} a {r.a_width:+.3f} +- {r.a_ci95:.3f}, b {r.b_depth:+.3f} +- {r.b_ci95:.3f} (n={r.seeds} seeds, "
              f"{r.rows} networks, depths {r.depths}); c = {r.c:.3f} [{r.c_lo:.3f}, {r.c_hi:.3f}]; "
              f"rms log residual free {r.rms_log_free:.3f}, hypothesis {r.rms_log_hypothesis:.3f}")
    held = width_law.holdout(errors)
    if not held.empty:
        write_csv(root / "at_depth_holdout.csv", held)
        log.info(f"  the deepest depth held out: c fitted on depths {held['fitted_on'].iloc[0]}, predicted c (w/L)^-1/2 "
              f"[c's 95% interval] vs measured mean +- t 95%:")
        for r in held.itertuples():
            log.info(f"    {r.method:6s} L={r.depth} w={r.width}: predicted {r.predicted:.3f} [{r.predicted_lo:.3f}, "
                  f"{r.predicted_hi:.3f}], measured {r.measured:.3f} +- {r.measured_ci95:.3f} (n={r.seeds})")
    if not Path(regime_csv).is_file():
        log.info(f"  ({regime_csv} not found: the width w*(L) is not drawn)")
        return fits
    distance = width_law.map_distance(regime_csv)
    for r in fits.itertuples():
        w = width_law.required_width(distance.index, distance.to_numpy(), r.c)
        picks = [d for d in (8, 64, 1024) if d in distance.index]
        log.info(f"  {r.method}: w*(L) = L (4 c / d(L))^2 with d(L) of relu-b0|depth-norm|t=10: "
              + ", ".join(f"L={d}: {w[list(distance.index).index(d)]:.3g}" for d in picks))
    heading = (title(sweeps).split("\n")[0] + f"\nerror fitted over depths {fits['depths'].iloc[0]}; d(L): regime map "
               f"cell relu-b0|depth-norm|t=10, d_rel(MTL-B, ANIL), mean of its draws ({regime_csv})")
    save_figure(needed_figure(figure), width_law.plot(errors, fits, distance, heading))
    log.info(f"  -> {root / 'at_depth_joint_fit.csv'}, figure {needed_figure(figure)}")
    return fits


def main(root, figure) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the sweeps under ``root``; write at_depth.csv, at_depth_slopes.csv and ``figure``, and the
    joint fit over width and depth with the width that depth needs (:func:`width_needed`)."""
    from ntk_bridge.io import save_figure, write_csv

    root = Path(root)
    sweeps = merge([load(p) for p in sweep_folders(root)])
    table, slope_rows = tidy(sweeps), slopes(sweeps)
    fig = plot(table, slope_rows, title(sweeps))
    write_csv(root / "at_depth.csv", table)
    write_csv(root / "at_depth_slopes.csv", slope_rows)
    save_figure(figure, fig)
    _print(sweeps, table, slope_rows, root, figure)
    width_needed(sweeps, root, figure)
    return table, slope_rows


def _print(sweeps, table, slope_rows, root, figure) -> None:
    for s in sweeps:
        note = "" if s.complete else " (INCOMPLETE: widths finished so far)"
        more = "" if s.folders == 1 else f" (+{s.folders - 1} folders)"
        log.info(f"depth {s.depth}: {s.folder}{more}, widths {sorted(int(w) for w in s.errors['width'].unique())}, "
              f"{s.errors['seed'].nunique()} seeds, {s.seconds:.0f} s{note}")
    log.info("\nslope of log rel_error vs log width (per-seed fits, mean +- 95% t-interval, n seeds); error at the widest width:")
    for r in slope_rows.itertuples():
        log.info(f"  depth {r.depth} {r.method:9s} slope {r.slope_seed_mean:+.3f} +- {r.slope_seed_ci95:.3f} (n={r.seeds}, "
              f"widths {r.widths}); last {r.last_slope:+.2f}; at {r.widest}: {r.at_widest:.4f} +- {r.at_widest_ci95:.4f}")
    log.info("\nd_rel(MTL-B, GBML) at the widest width, finite vs closed form (same seeds):")
    for s in sweeps:
        w = int(s.errors["width"].max())
        for pair in PAIRS:
            sel = (table["depth"] == s.depth) & (table["subject"] == pair) & (table["width"] == w)
            get = table[sel].set_index("quantity")
            if "d_rel_net" in get.index:
                log.info(f"  depth {s.depth} width {w} {pair}: net {get.loc['d_rel_net', 'mean']:.4f}, closed "
                      f"{get.loc['d_rel_closed', 'mean']:.4f}; paired gap {get.loc['d_rel_gap', 'mean']:+.4f} +- "
                      f"{get.loc['d_rel_gap', 'ci95']:.4f} (n={int(get.loc['d_rel_gap', 'n'])})")
    log.info(f"\n-> {root / 'at_depth.csv'}, {root / 'at_depth_slopes.csv'}, figure {figure}")
