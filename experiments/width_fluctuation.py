"""The NTK / NNGP of finite ReLU networks at initialisation against the infinite-width kernels, over
width x depth x seed, beside the derived law (docs/theory.md section 10). Nothing is trained.

Re-create (writes experiments/results/width_fluctuation/{config.json, measurements.csv, table.csv,
table.md, fluctuation.png}; resumable: a (width, seed) already in measurements.csv is skipped):

    nice -n 10 .venv/bin/python experiments/width_fluctuation.py            # measure, then summarise
    .venv/bin/python experiments/width_fluctuation.py --summarise            # tables and figure only

Network: the project's default FC network (ReLU, W_std = sqrt 2, no biases, readout W_std = 1),
widths x depths 1..64 (the depth-l net is the first l layers of the deepest plus its own readout, so
one sweep per (width, seed) gives every depth); weights from ``SeedSource(seed)``
(:mod:`ntk_bridge.finite.fluctuation`); 8 inputs on the sphere, d = 16, made as the task families make
them. Per (width, depth, seed): r_i = Theta_n(x_i, x_i) / Theta_inf(x_i, x_i); the seed's value is
mean_i (r_i - 1)^2 (unbiased for Var r: every x_i on the sphere has the same law); likewise for K.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec, to_sphere
from ntk_bridge.finite import fluctuation as fl
from ntk_bridge.io import write_csv, write_json, write_text
from ntk_bridge.stats import finite_mean_ci

OUT = Path("experiments/results/width_fluctuation")


@dataclass(frozen=True)
class Config:
    seeds: dict = field(default_factory=lambda: {256: 4, 512: 4, 1024: 3, 2048: 2, 4096: 1})
    depths: tuple = (1, 2, 4, 8, 16, 32, 64)
    n_points: int = 8
    d: int = 16
    input_seed: int = 0
    source: str = "SeedSource"
    law_cut: float = 1 / 16          # the leading form is compared on cells with L / n <= law_cut


def inputs(config: Config) -> np.ndarray:
    return to_sphere(np.random.default_rng(config.input_seed).standard_normal((config.n_points, config.d)))


def measure_one(config: Config, width: int, seed: int, x: np.ndarray, inf: dict) -> list[dict]:
    t = time.perf_counter()
    got = fl.init_kernels(NetSpec(), width, x, fl.SeedSource(seed), depths=config.depths)
    sec = time.perf_counter() - t
    rows = []
    for L in config.depths:
        th, k, ref = got[L].theta, got[L].k, inf[L]
        r, q = np.diag(th) / np.diag(ref.theta), np.diag(k) / np.diag(ref.k)
        rows.append(dict(width=width, depth=L, seed=seed, ntk_relsq=float(np.mean((r - 1) ** 2)),
                         ntk_mean=float(np.mean(r)), nngp_relsq=float(np.mean((q - 1) ** 2)), nngp_mean=float(np.mean(q)),
                         ntk_frob=float(np.linalg.norm(th - ref.theta) / np.linalg.norm(ref.theta)),
                         nngp_frob=float(np.linalg.norm(k - ref.k) / np.linalg.norm(ref.k)),
                         ntk_sdlog=float(np.std(np.log(r))), seconds=sec, load1=os.getloadavg()[0]))
    return rows


def measure(config: Config, path: Path) -> None:
    x = inputs(config)
    inf = depth_sweep(NetSpec(depth=max(config.depths)), x, depths=list(config.depths))
    done = set()
    if path.is_file():
        old = pd.read_csv(path)
        done = set(zip(old["width"], old["seed"]))
    for i in range(max(config.seeds.values())):          # round robin: every width gets seeds early
        for width, n in sorted(config.seeds.items()):
            if i >= n or (width, i) in done:
                continue
            rows = measure_one(config, width, i, x, inf)
            new = pd.DataFrame(rows)
            new.to_csv(path, mode="a", header=not path.is_file(), index=False)
            print(f"width {width} seed {i}: {rows[0]['seconds']:.1f} s (load {rows[0]['load1']:.1f})", flush=True)


def summarise(m: pd.DataFrame, config: Config) -> pd.DataFrame:
    rows = []
    for (w, L), g in m.groupby(["width", "depth"]):
        v = g["ntk_relsq"].to_numpy()
        mean, half, n, _ = finite_mean_ci(v)
        derived = float(fl.ntk_constant(L) * L / w)
        nv = g["nngp_relsq"].to_numpy()
        nmean, nhalf, _, _ = finite_mean_ci(nv)
        rows.append(dict(width=w, depth=L, L_over_n=L / w, seeds=n, ntk_measured=mean, ntk_ci95=half,
                         ntk_median=float(np.median(v)), ntk_min=float(v.min()), ntk_max=float(v.max()),
                         ntk_derived=derived, ntk_ratio=mean / derived, ntk_ratio_lo=(mean - half) / derived,
                         ntk_ratio_hi=(mean + half) / derived, hanin_nica=float(fl.hanin_nica_relvar(L, w)),
                         ntk_mean_ratio=float(g["ntk_mean"].mean()),
                         nngp_measured=nmean, nngp_ci95=nhalf, nngp_exact=float(fl.nngp_relvar(L, w)),
                         nngp_ratio=nmean / float(fl.nngp_relvar(L, w)),
                         ntk_frob_msq=float(np.mean(g["ntk_frob"] ** 2)), in_law=bool(L / w <= config.law_cut)))
    return pd.DataFrame(rows)


def pooled(t: pd.DataFrame, m: pd.DataFrame, config: Config) -> str:
    """Cluster bootstrap over (width, seed) of sum(measured) / sum(derived) over the cells in the law's range."""
    m = m[m["depth"] / m["width"] <= config.law_cut].copy()
    m["derived"] = fl.ntk_constant(m["depth"]) * m["depth"] / m["width"]
    m["nngp_exact"] = fl.nngp_relvar(m["depth"], m["width"])
    groups = [g for _, g in m.groupby(["width", "seed"])]
    rng = np.random.default_rng(0)

    def ratio(gs, a, b):
        # per cell: mean over the sampled seeds, then measured/derived averaged with the cells' weights 1/derived
        f = pd.concat(gs)
        c = f.groupby(["width", "depth"])[[a, b]].mean()
        return float(np.mean(c[a] / c[b]))

    out = []
    for a, b, name in (("ntk_relsq", "derived", "NTK diagonal, measured / c(L) L/n"),
                       ("nngp_relsq", "nngp_exact", "NNGP diagonal, measured / ((1+5/n)^L - 1)")):
        est = ratio(groups, a, b)
        boots = [ratio([groups[j] for j in rng.integers(0, len(groups), len(groups))], a, b) for _ in range(400)]
        lo, hi = np.quantile(boots, [0.025, 0.975])
        out.append(f"{name}: mean over {t['in_law'].sum()} cells with L/n <= {config.law_cut:g} = {est:.3f}, "
                   f"95% cluster bootstrap over (width, seed) [{lo:.3f}, {hi:.3f}]")
    return "\n".join(out)


def markdown(t: pd.DataFrame) -> str:
    lines = ["| width n | depth L | L/n | seeds | measured Var(Theta_n/Theta_inf): mean +- t95 (median [min, max] over seeds) "
             "| derived c(L) L/n | ratio | HN exp(5L/n)-1 | NNGP measured / exact (1+5/n)^L-1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        mark = "" if r.in_law else " (beyond 1/16)"
        lines.append(f"| {r.width} | {r.depth} | {r.L_over_n:.3g}{mark} | {r.seeds} | {r.ntk_measured:.3g} +- {r.ntk_ci95:.2g} "
                     f"({r.ntk_median:.3g} [{r.ntk_min:.3g}, {r.ntk_max:.3g}]) | {r.ntk_derived:.3g} | **{r.ntk_ratio:.2f}** "
                     f"| {r.hanin_nica:.3g} | {r.nngp_measured:.3g} / {r.nngp_exact:.3g} = {r.nngp_ratio:.2f} |")
    return "\n".join(lines)


def figure(t: pd.DataFrame, heading: str):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 5.2))
    ax, bx, cx = fig.subplots(1, 3)
    depths = sorted(t["depth"].unique())
    col = {d: colormaps["viridis"](i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    x = np.geomspace(t["L_over_n"].min(), t["L_over_n"].max(), 100)
    for d in depths:
        g = t[t["depth"] == d]
        ax.errorbar(g["L_over_n"], g["ntk_measured"], yerr=g["ntk_ci95"].clip(upper=0.999 * g["ntk_measured"]),
                    fmt="o", color=col[d], ms=4, label=f"L={d}")
        bx.errorbar(g["L_over_n"] * (1 + 0.03 * depths.index(d)), g["ntk_ratio"],
                    yerr=[g["ntk_ratio"] - g["ntk_ratio_lo"].clip(lower=1e-3), g["ntk_ratio_hi"] - g["ntk_ratio"]],
                    fmt="o", color=col[d], ms=4, label=f"L={d}")
        cx.plot(g["L_over_n"], g["nngp_ratio"], "s", color=col[d], ms=4, label=f"L={d}")
    ax.plot(x, 11 / 3 * x, "k-", lw=1, label="derived c(L) L/n, c -> 11/3 (L = 1: c = 3)")
    ax.plot(x, 3 * x, "k:", lw=1)
    ax.plot(x, 5 * x, "r--", lw=1, label="5 L/n (Hanin-Nica's rate)")
    ax.set(xscale="log", yscale="log", xlabel="L / n", ylabel="Var(Theta_n(x,x) / Theta_inf(x,x))",
           title="Does the NTK diagonal fluctuate as c(L) L/n?\nmeasured (mean +- t95 over seeds) vs derived")
    for a in (bx, cx):
        a.axhline(1, color="k", lw=1)
        a.axvline(1 / 16, color="grey", ls=":", lw=1)
        a.set(xscale="log", xlabel="L / n")
    bx.axhline(5 / (11 / 3), color="r", ls="--", lw=1, label="where 5 L/n would put it")
    bx.set(ylabel="measured / derived", ylim=(0, 2.5),
           title="Is the constant 11/3 (not 5)? ratio per cell, t95\n(dotted: L/n = 1/16, the width law's range ends)")
    cx.set(ylabel="measured / exact", ylim=(0, 2),
           title="Is the NNGP's law exact? measured / ((1+5/n)^L - 1)")
    ax.legend(fontsize=7)
    bx.legend(fontsize=7, ncol=2)
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summarise", action="store_true", help="only re-make the tables and the figure")
    args = ap.parse_args(argv)
    config = Config()
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = {**asdict(config), "seeds": {str(k): v for k, v in config.seeds.items()},
           "network": {**asdict(NetSpec()), "depth": "each of depths"}, "inputs": "to_sphere(default_rng(input_seed).standard_normal((n_points, d)))"}
    write_json(OUT / "config.json", cfg)
    path = OUT / "measurements.csv"
    if not args.summarise:
        measure(config, path)
    m = pd.read_csv(path)
    t = summarise(m, config)
    write_csv(OUT / "table.csv", t)
    note = pooled(t, m, config)
    load = "seconds per (width, seed) sweep: " + ", ".join(
        f"{w}: {g['seconds'].median():.1f}" for w, g in m.drop_duplicates(["width", "seed"]).groupby("width"))
    write_text(OUT / "table.md", "# NTK / NNGP diagonal fluctuation at initialisation: measured vs derived\n\n"
               + markdown(t) + "\n\n" + note + "\n\n" + load + f"; load average (1 min) {m['load1'].min():.1f}-{m['load1'].max():.1f}\n")
    heading = ("FC ReLU, W_std = sqrt 2, no biases, 8 inputs on the sphere (d = 16), weights SeedSource(seed), no training; "
               f"widths {sorted(m['width'].unique())}, depths {sorted(m['depth'].unique())}, seeds per width "
               f"{dict(m.drop_duplicates(['width', 'seed']).groupby('width').size())}; experiments/width_fluctuation.py")
    from ntk_bridge.io import save_figure

    save_figure(OUT / "fluctuation.png", figure(t, heading))
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
