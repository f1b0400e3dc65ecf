"""The trained networks' error to the closed forms beside the part that the kernel at initialisation
causes (ntk_bridge/finite/init_gain.py; docs/theory.md section 10.6). Nothing is trained.

Re-create (reads experiments/results/width_sweep/**/errors.csv and config.json; writes
experiments/results/width_fluctuation/gain/{config.json, gain.csv, table.md, needed_width.csv, gain.png}):

    nice -n 10 .venv/bin/python experiments/init_kernel_gain.py            # resumable: rows in gain.csv are kept
    .venv/bin/python experiments/init_kernel_gain.py --summarise

For every (depth, width, seed) trained with MTL-B and ANIL in the committed width sweeps, the same task
draw and exactly the same initial parameters (``init_net``) give Theta_n, K_n, f0 at the task points;
e_init = d_rel(F(Theta_n; f0), F(Theta_inf; f0)) with the sweep's schedule, beside the trained rel_error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.closed_form.tasks import FamilyConfig
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.finite import fluctuation as fl
from ntk_bridge.finite import init_gain, width_law
from ntk_bridge.io import save_figure, write_csv, write_json, write_text

SWEEPS = Path("experiments/results/width_sweep")
OUT = Path("experiments/results/width_fluctuation/gain")
REGIME = Path("experiments/results/regime_map/regime_map.csv")
METHODS = ("mtl-b", "anil")
FITTED_C = {"mtl-b": 2.46, "anil": 2.68}      # experiments/results/width_sweep/README.md, joint fit, w/L >= 16


def trained() -> pd.DataFrame:
    """Trained rows (depth, width, seed, method, rel_error, inner_step) of every committed sweep folder."""
    frames = []
    for path in sorted(SWEEPS.rglob("errors.csv")):
        cfg = json.loads((path.parent / "config.json").read_text())
        f = pd.read_csv(path)
        f = f[f["method"].isin(METHODS)].copy()
        f["inner_step"] = cfg["inner_step"]
        f["folder"] = str(path.parent)
        frames.append(f[["depth", "width", "seed", "method", "rel_error", "inner_step", "folder"]])
    return pd.concat(frames, ignore_index=True)


def measure(rows: pd.DataFrame, path: Path) -> None:
    done = set()
    if path.is_file():
        done = set(map(tuple, pd.read_csv(path)[["depth", "width", "seed"]].to_numpy()))
    family = FamilyConfig(family="teacher", d=16, n_train_tasks=5, n_test_tasks=4, n_query=5, n_support=5)
    for (depth, width, seed), g in rows.groupby(["depth", "width", "seed"]):
        if (depth, width, seed) in done:
            continue
        out = pd.DataFrame(init_gain.kernel_error_at_init(NetSpec(depth=int(depth)), int(width), int(seed), family,
                                                          float(g["inner_step"].iloc[0]), METHODS))
        out.to_csv(path, mode="a", header=not path.is_file(), index=False)
        print(f"depth {depth} width {width} seed {seed}: e_init {out['e_init'].round(4).tolist()}", flush=True)


def table(j: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, depth, width), g in j.groupby(["method", "depth", "width"]):
        share = (g["e_init"] / g["rel_error"]).to_numpy()
        rows.append(dict(method=method, depth=depth, width=width, seeds=len(g), w_over_L=width / depth,
                         e_trained=g["rel_error"].mean(), e_init=g["e_init"].mean(), e_init_centred=g["e_init_centred"].mean(),
                         share_median=float(np.median(share)), share_min=float(share.min()), share_max=float(share.max()),
                         law_relsd=float(fl.ntk_relsd(depth, width)), kernel_frob=g["kernel_frob"].mean(),
                         gain_init=float(np.median(g["gain"])), gain_trained=float(np.median(g["rel_error"] / g["law_relsd"]))))
    return pd.DataFrame(rows)


def markdown(t: pd.DataFrame) -> str:
    lines = ["| method | L | w | seeds | trained e (mean) | e_init (mean) | e_init, f0 = 0 | e_init / e: median [min, max] | "
             "sqrt(c L/w) | ||Theta_n - Theta_inf||_F rel | G_init = e_init / sqrt(cL/w) (median) | e / sqrt(cL/w) (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.method} | {r.depth} | {r.width} | {r.seeds} | {r.e_trained:.3f} | {r.e_init:.3f} | {r.e_init_centred:.3f} | "
                     f"{r.share_median:.2f} [{r.share_min:.2f}, {r.share_max:.2f}] | {r.law_relsd:.3f} | {r.kernel_frob:.3f} | "
                     f"{r.gain_init:.2f} | {r.gain_trained:.2f} |")
    return "\n".join(lines)


def needed(j: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """w*(L) from the kernel part G_init sqrt(c L/w) = d/4 beside the fitted law's L (4 c_fit / d)^2."""
    d = width_law.map_distance(REGIME)
    gains = {}
    rows = []
    for method in METHODS:
        g = j[(j["method"] == method) & (j["width"] / j["depth"] >= width_law.MIN_RATIO)]
        gains[method] = dict(init=float(np.median(g["gain"])), trained=float(np.median(g["rel_error"] / g["law_relsd"])),
                             networks=len(g))
        for L, dist in d.items():
            rows.append(dict(method=method, depth=L, d_closed=dist,
                             w_kernel_at_init=float(init_gain.required_width(L, dist, gains[method]["init"])),
                             w_kernel_x_trained_gain=float(init_gain.required_width(L, dist, gains[method]["trained"])),
                             w_fitted=float(width_law.required_width(L, dist, FITTED_C[method]))))
    return pd.DataFrame(rows), gains


def figure(j: pd.DataFrame, w: pd.DataFrame, heading: str):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 5.2))
    ax, bx, cx = fig.subplots(1, 3)
    depths = sorted(j["depth"].unique())
    col = {d: colormaps["viridis"](i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    m = j[j["method"] == "mtl-b"].groupby(["depth", "width"])[["rel_error", "e_init"]].mean().reset_index()
    for d in depths:
        g = m[m["depth"] == d]
        ax.plot(g["width"] / d, g["rel_error"], "o-", color=col[d], ms=4, label=f"trained, L={d}")
        ax.plot(g["width"] / d, g["e_init"], "x--", color=col[d], ms=5, label=f"kernel at init, L={d}")
        s = j[(j["depth"] == d)]
        bx.plot(s["width"] / d * (1 + 0.04 * (s["method"] == "anil")), s["e_init"] / s["rel_error"], "o" if d else "s",
                color=col[d], ms=3, ls="none", label=f"L={d}")
    x = np.geomspace(1, (j["width"] / j["depth"]).max(), 50)
    ax.plot(x, 2.46 * x ** -0.5, "k-", lw=1, label="fitted 2.46 (w/L)^-1/2 (MTL-B)")
    ax.plot(x, np.sqrt(11 / 3) * x ** -0.5, "r:", lw=1, label="sqrt(11/3) (w/L)^-1/2 (kernel diagonal's sd)")
    ax.set(xscale="log", yscale="log", xlabel="w / L", ylabel="relative error to the closed form",
           title="MTL-B: how much of the trained error does the kernel at init cause?\nseed means, widths of the committed sweeps")
    ax.legend(fontsize=6, ncol=2)
    bx.axhline(1, color="k", lw=1)
    bx.axvline(width_law.MIN_RATIO, color="grey", ls=":", lw=1)
    bx.set(xscale="log", yscale="log", xlabel="w / L", ylabel="e_init / e_trained (per network)",
           title="Share per network, MTL-B and ANIL (ANIL shifted right)\n(1 = the kernel at init explains it all)")
    bx.legend(fontsize=7)
    for method, mk in (("mtl-b", "o"), ("anil", "s")):
        g = w[w["method"] == method]
        cx.plot(g["depth"], g["w_fitted"], mk + "-", color="k", label=f"{method}: fitted law L (4c/d)^2")
        cx.plot(g["depth"], g["w_kernel_at_init"], mk + "--", color="tab:blue", label=f"{method}: kernel at init only (G_init)")
    cx.set(xscale="log", yscale="log", xlabel="depth L", ylabel="width w* for error <= d(L)/4",
           title="Which width does depth need? d(L) = regime map's closed-form\nd_rel(MTL-B, ANIL), cell relu-b0|depth-norm|t=10")
    cx.legend(fontsize=7)
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summarise", action="store_true")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "config.json", dict(sweeps=str(SWEEPS), methods=METHODS, fitted_c=FITTED_C, regime=str(REGIME),
                                         closeness=4.0, min_ratio=width_law.MIN_RATIO, outer_time=10.0, lr_fraction=0.5,
                                         inner_steps=5, family="teacher d=16, 5 train / 4 test tasks, n_q = n_s = 5"))
    rows = trained()
    path = OUT / "gain.csv"
    if not args.summarise:
        measure(rows, path)
    g = pd.read_csv(path)
    j = g.merge(rows[["depth", "width", "seed", "method", "rel_error"]], on=["depth", "width", "seed", "method"])
    t = table(j)
    write_csv(OUT / "table.csv", t)
    w, gains = needed(j)
    write_csv(OUT / "needed_width.csv", w)
    lines = [f"{m}: over the {v['networks']} networks with w/L >= 16: G_init (median e_init / sqrt(c L/w)) = {v['init']:.2f}, "
             f"trained e / sqrt(c L/w) = {v['trained']:.2f}" for m, v in gains.items()]
    wtab = ["| method | L | d(L) | w* kernel at init (G_init) | w* kernel law x trained gain | w* fitted law |", "|---|---|---|---|---|---|"]
    wtab += [f"| {r.method} | {r.depth} | {r.d_closed:.3g} | {r.w_kernel_at_init:.3g} | {r.w_kernel_x_trained_gain:.3g} | {r.w_fitted:.3g} |"
             for r in w[w["depth"].isin([1, 2, 4, 8, 16, 64, 256, 1024])].itertuples()]
    write_text(OUT / "table.md", "# Trained error vs the kernel at initialisation\n\n" + markdown(t) + "\n\n" + "\n".join(lines)
               + "\n\n" + "\n".join(wtab) + "\n")
    heading = ("committed width sweeps (teacher tasks d = 16, k = 5 inner steps of a = 0.4/(L+1), eta t = 10 in S steps); "
               "kernel at init: the same draws' initial parameters, Theta_n/K_n/f0 at the task points into the closed forms; "
               "experiments/init_kernel_gain.py")
    save_figure(OUT / "gain.png", figure(j, w, heading))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
