"""The width that depth needs: the finite-width error fitted jointly over width and depth.

Rows: every trained network of the width sweeps (depth L, width w, seed s, method), its error
e = ||F_net - F_closed|| / ||F_closed|| against its own closed form.

- :func:`joint_fit`: per seed and method, least squares of  log e = k + a log w + b log L  over the
  rows with w / L >= ``min_ratio`` (the kernel regime needs width >> depth; the ratio is fixed before
  looking at the fit), then mean +- 95% t-interval over seeds of a and b. The hypothesis
  e = c (w / L)^(-1/2) is a = -1/2, b = +1/2; its constant c (per seed: the geometric mean of
  e (w / L)^(1/2)) is reported with its t-interval, and the RMS of the log residual of both models.
- :func:`required_width`: under the hypothesis, the width at which a trained network's error falls
  to a quarter of the closed-form MTL-GBML distance d(L): e <= d / 4 keeps the finite distance
  within d +- 2 e ||F|| / ||F|| = d (1 +- 1/2), i.e.  w*(L) = L (4 c / d(L))^2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ntk_bridge.errors import require
from ntk_bridge.stats import finite_mean_ci

MIN_RATIO = 16.0
CLOSENESS = 4.0      # e <= d / CLOSENESS


def _fit_one(g: pd.DataFrame) -> tuple[float, float, float]:
    x = np.column_stack([np.ones(len(g)), np.log(g["width"]), np.log(g["depth"])])
    (k, a, b), *_ = np.linalg.lstsq(x, np.log(g["rel_error"].to_numpy(np.float64)), rcond=None)
    return float(k), float(a), float(b)


def joint_fit(errors: pd.DataFrame, methods=("mtl-b", "anil"), min_ratio: float = MIN_RATIO) -> pd.DataFrame:
    """One row per method: free exponents a (width) and b (depth), mean +- t 95% over seeds; the
    hypothesis' constant c; residual RMS (log) of the free fit and of the hypothesis; rows used."""
    e = errors[np.isfinite(errors["rel_error"].to_numpy(np.float64)) & (errors["width"] / errors["depth"] >= min_ratio)]
    rows = []
    for method in methods:
        g = e[e["method"] == method]
        seeds = [x for _, x in g.groupby("seed") if x["depth"].nunique() >= 2 and len(x) >= 4]
        if len(seeds) < 2:
            continue
        fits = np.array([_fit_one(x) for x in seeds])
        log_c = np.array([np.mean(np.log(x["rel_error"]) + 0.5 * np.log(x["width"] / x["depth"])) for x in seeds])
        res_free = np.concatenate([np.log(x["rel_error"]) - (f[0] + f[1] * np.log(x["width"]) + f[2] * np.log(x["depth"]))
                                   for x, f in zip(seeds, fits)])
        res_h = np.concatenate([np.log(x["rel_error"]) - (lc - 0.5 * np.log(x["width"] / x["depth"]))
                                for x, lc in zip(seeds, log_c)])
        am, ah, n, _ = finite_mean_ci(fits[:, 1])
        bm, bh, _, _ = finite_mean_ci(fits[:, 2])
        cm, ch, _, _ = finite_mean_ci(log_c)
        rows.append(dict(method=method, a_width=am, a_ci95=ah, b_depth=bm, b_ci95=bh, seeds=n,
                         c=math.exp(cm), c_lo=math.exp(cm - ch), c_hi=math.exp(cm + ch),
                         rms_log_free=float(np.sqrt(np.mean(res_free ** 2))),
                         rms_log_hypothesis=float(np.sqrt(np.mean(res_h ** 2))),
                         rows=int(sum(len(x) for x in seeds)), depths=",".join(map(str, sorted(g["depth"].unique()))),
                         min_ratio=min_ratio))
    return pd.DataFrame(rows)


def holdout(errors: pd.DataFrame, methods=("mtl-b", "anil"), min_ratio: float = MIN_RATIO) -> pd.DataFrame:
    """The deepest depth held out: c fitted (hypothesis e = c (w/L)^-1/2, per seed, t-interval) on the other
    depths, its prediction per width at the held-out depth beside the measured mean +- t 95% over seeds."""
    e = errors[np.isfinite(errors["rel_error"].to_numpy(np.float64)) & (errors["width"] / errors["depth"] >= min_ratio)]
    held = int(e["depth"].max())
    rows = []
    for method in methods:
        fit = joint_fit(e[e["depth"] != held], (method,), min_ratio)
        if fit.empty:
            continue
        f = fit.iloc[0]
        for width, g in e[(e["depth"] == held) & (e["method"] == method)].groupby("width"):
            m, h, n, _ = finite_mean_ci(g["rel_error"])
            x = (width / held) ** -0.5
            rows.append(dict(method=method, depth=held, width=int(width), measured=m, measured_ci95=h, seeds=n,
                             predicted=f.c * x, predicted_lo=f.c_lo * x, predicted_hi=f.c_hi * x, fitted_on=f.depths))
    return pd.DataFrame(rows)


def required_width(depth, distance, c: float, closeness: float = CLOSENESS):
    """w*(L) = L (closeness c / d(L))^2: the width where e = c (w / L)^(-1/2) reaches d(L) / closeness."""
    depth, distance = np.asarray(depth, np.float64), np.asarray(distance, np.float64)
    require(np.all(distance > 0), "the closed-form distance must be > 0 to ask for the width that shows it")
    return depth * (closeness * c / distance) ** 2


def map_distance(regime_csv, cell: str = "relu-b0|depth-norm|t=10", pair: str = "mtl-b vs anil") -> pd.Series:
    """Mean d_rel over draws per depth of one regime-map cell (the closed-form distance d(L))."""
    f = pd.read_csv(regime_csv)
    g = f[(f["cell"] == cell) & (f["pair"] == pair)]
    require(len(g), f"{regime_csv} has no rows for cell {cell!r}, pair {pair!r}; run ntk-bridge regime-map")
    return g.groupby("depth")["d_rel"].mean()


def plot(errors: pd.DataFrame, fits: pd.DataFrame, distance: pd.Series, heading: str):
    """Left: seed-mean error vs w / L for every depth and the fitted c (w / L)^-1/2; right: w*(L) with its band."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5.5))
    (ax, bx) = fig.subplots(1, 2)
    markers = {"mtl-b": "o", "anil": "s"}
    depths = sorted(errors["depth"].unique())
    colors = {d: colormaps["viridis"](i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    for r in fits.itertuples():
        m = errors[errors["method"] == r.method].groupby(["depth", "width"])["rel_error"].mean().reset_index()
        for d in depths:
            g = m[m["depth"] == d]
            ax.plot(g["width"] / d, g["rel_error"], marker=markers.get(r.method, "o"), ls="none", color=colors[d],
                    label=f"{r.method}, L={d}")
        x = np.geomspace(1, (errors["width"] / errors["depth"]).max(), 50)
        ax.plot(x, r.c * x ** -0.5, color="k", ls="--" if r.method == "anil" else "-", lw=1,
                label=f"{r.method}: {r.c:.2f} (w/L)^-1/2 [{r.c_lo:.2f}, {r.c_hi:.2f}]; free fit w^{r.a_width:+.2f}, L^{r.b_depth:+.2f}")
        L = distance.index.to_numpy(np.float64)
        w = required_width(L, distance.to_numpy(), r.c)
        bx.fill_between(L, required_width(L, distance.to_numpy(), r.c_lo), required_width(L, distance.to_numpy(), r.c_hi),
                        alpha=0.2)
        bx.plot(L, w, marker=markers.get(r.method, "o"), label=f"w*(L) from {r.method}'s c (95% band)")
    widest = errors.groupby("depth")["width"].max()
    bx.plot(widest.index, widest.to_numpy(), "kx", ms=8, label="widest width trained (width sweeps)")
    ax.axvline(MIN_RATIO, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="width / depth", ylabel="||F_net - F_closed|| / ||F_closed||",
           title=f"finite-width error vs width/depth (fit on w/L >= {MIN_RATIO:g})")
    ax.legend(fontsize=6, ncol=2)
    bx.set(xscale="log", yscale="log", xlabel="depth L", ylabel="width w*",
           title=f"width where the error is d(L)/{CLOSENESS:g}: d(L) = closed-form d_rel(MTL-B, ANIL)")
    bx.legend(fontsize=7)
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig
