"""Closed-form kernel predictors (MTL-A, MTL-B, ANIL, MAML, head-only, NTK) on real few-shot tasks.

Episodes come from a real data set (default: Omniglot from the project's data folder; training
episodes from the training alphabets, test episodes from the held-out test alphabets). Images
are block-averaged to --image-size, centred by the training split's per-pixel mean and put on the
sphere of radius sqrt(d). Classification is one-hot regression (targets 1 - 1/C on the true
class, -1/C elsewhere; prediction = argmax). For every depth of the fully connected ReLU kernel
(one pass of the layer recursion gives all depths), every predictor's accuracy is measured per
test episode and reported as mean +- 95% CI (1.96 std / sqrt(episodes)), with the number of
episodes, queries per class and shots beside it. The MTL-vs-GBML distances d_rel and d_tr on
these tasks are printed next to those of the synthetic depth sweep (--synthetic).

Optionally (--conv-depths, default 1) the same on a convolutional kernel
([Conv 3x3 + Relu] x depth + global average pool + Dense, neural-tangents) on smaller images and
fewer episodes: it costs O((H W)^2) per pair of images.

Kernels over a few thousand images are never formed whole: the training block is computed once
and the test tasks' kernels are evaluated in tiles of --tile-rows points (printed), their
predictions made in groups of --group-rows points. Class slots are
assigned at random per episode, so a function shared by all training tasks has mean target ~0;
the run measures what that leaves for transfer.

Writes OUT/episodes.csv (accuracy per episode), OUT/accuracy.csv (mean +- CI table),
OUT/distances.csv, OUT/distance_vs_synthetic.csv, OUT/timing.csv, OUT/config.json, the figure,
and prints the summary.

Example:
    ntk-bridge kernel-fewshot --shots 1,5 --train-episodes 20 --test-episodes 100 --depths 1,2,4,8,16,32,64
"""

from __future__ import annotations

import argparse
import math
import time

from ntk_bridge.commands._options import add_predictor_arguments, int_list, int_list_or_none, predictor_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("episodes")
    g.add_argument("--dataset", default="omniglot", help="data set (default omniglot)")
    g.add_argument("--root", default=None, help="data folder (default: the project's Omniglot folder)")
    g.add_argument("--train-split", default="train", help="split of the training tasks (default train)")
    g.add_argument("--test-split", default="test", help="split of the test tasks (default test)")
    g.add_argument("--n-way", type=int, default=5)
    g.add_argument("--shots", type=int_list, default=(1, 5), help="comma-separated shot settings (default 1,5)")
    g.add_argument("--n-query", type=int, default=5, help="queries per class (default 5)")
    g.add_argument("--train-episodes", type=int, default=20, help="training tasks (default 20)")
    g.add_argument("--test-episodes", type=int, default=100, help="test tasks (default 100)")
    g.add_argument("--image-size", type=int, default=14, help="images block-averaged to SIZE x SIZE (default 14)")
    g.add_argument("--centre", choices=("pixel", "image", "none"), default="pixel",
                   help="subtract the training split's per-pixel mean (default), each image's mean, or nothing")
    g.add_argument("--seed", type=int, default=0, help="episode sampling seed")
    g = p.add_argument_group("fully connected kernel (infinite width)")
    g.add_argument("--depths", type=int_list, default=(1, 2, 4, 8, 16, 32, 64),
                   help="comma-separated depths (default 1,2,4,...,64), one recursion pass")
    g.add_argument("--activation", choices=("relu", "erf"), default="relu")
    g.add_argument("--W-std", type=float, default=math.sqrt(2.0), help="hidden weight std (default sqrt 2)")
    g.add_argument("--b-std", type=float, default=0.0, help="hidden bias std (default 0)")
    g.add_argument("--tile-rows", type=int, default=1000,
                   help="test points per kernel evaluation call (memory: 2 x depths x tile x train points x 8 bytes)")
    g.add_argument("--group-rows", type=int, default=6000,
                   help="test points whose predictions share one assembled Gram (memory per depth: "
                        "2 x (train points + group)^2 x 8 bytes); training-side solves are redone per group")
    g = p.add_argument_group("convolutional kernel")
    g.add_argument("--conv-depths", type=int_list_or_none, default=(1,),
                   help="conv depths (default 1; 'none' to skip)")
    g.add_argument("--conv-image-size", type=int, default=7, help="image size for the conv kernel (default 7)")
    g.add_argument("--conv-train-episodes", type=int, default=5, help="first N training episodes (default 5)")
    g.add_argument("--conv-test-episodes", type=int, default=20, help="first N test episodes (default 20)")
    g.add_argument("--conv-tile", type=int, default=32, help="conv kernel evaluated in TILE x TILE point blocks")
    add_predictor_arguments(p, outer_ridge_help="ridge on Phi / Theta_MTL / Theta when t = inf")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="experiments/results/kernel_fewshot", help="results folder")
    g.add_argument("--figure", default="figures/kernel_fewshot.png", help="figure path")
    g.add_argument("--synthetic", default="experiments/results/depth_sweep/depth_sweep.csv",
                   help="the synthetic depth sweep's depth_sweep.csv, shown beside the real-task distances")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args):
    from ntk_bridge.errors import require
    from ntk_bridge.kernel_fewshot import FewShotConfig
    from ntk_bridge.kernels import NetSpec

    require(len(args.depths) >= 1, "--depths is empty; give at least one depth")
    require(len(args.shots) >= 1, "--shots is empty; give e.g. 1,5")
    return FewShotConfig(
        dataset=args.dataset, root=args.root, train_split=args.train_split, test_split=args.test_split,
        n_way=args.n_way, shots=tuple(args.shots), n_query=args.n_query, train_episodes=args.train_episodes,
        test_episodes=args.test_episodes, image_size=args.image_size, centre=args.centre,
        depths=tuple(sorted(set(args.depths))),
        net=NetSpec(depth=max(args.depths), activation=args.activation, W_std=args.W_std, b_std=args.b_std),
        predictor=predictor_config(args),
        tile_rows=args.tile_rows, group_rows=args.group_rows, conv_depths=tuple(sorted(set(args.conv_depths))),
        conv_image_size=args.conv_image_size, conv_train_episodes=args.conv_train_episodes,
        conv_test_episodes=args.conv_test_episodes, conv_tile=args.conv_tile, seed=args.seed)


def vs_synthetic(dist, synthetic):
    """Real-task distances (FC) per pair, shots and depth, with the synthetic mean at the same depth."""
    import pandas as pd

    real = dist[dist["kernel"] == "fc"][["pair", "shots", "depth", "d_rel", "d_tr", "d_rel_ep_ci95", "agree"]]
    if synthetic is None:
        real = real.assign(d_rel_synthetic=float("nan"), d_tr_synthetic=float("nan"))
        return real.reset_index(drop=True)
    syn = synthetic.rename(columns={"d_rel": "d_rel_synthetic", "d_tr": "d_tr_synthetic"})
    return pd.merge(real, syn, on=["pair", "depth"], how="left").reset_index(drop=True)


def rate_rows(merged):
    """Slope of log d_rel vs log depth per pair and shots, real and synthetic (same depths)."""
    import numpy as np

    from ntk_bridge.metrics import fit_loglog

    rows = []
    for (pair, shots), g in merged.groupby(["pair", "shots"], sort=True):
        row = {"pair": pair, "shots": shots, "depth_lo": int(g["depth"].min()), "depth_hi": int(g["depth"].max()),
               "d_rel_lo": float(g["d_rel"].iloc[0]), "d_rel_hi": float(g["d_rel"].iloc[-1]),
               "rate_real": fit_loglog(g["depth"], g["d_rel"])[0] if len(g) >= 2 else float("nan")}
        syn = g.dropna(subset=["d_rel_synthetic"])
        row["rate_synthetic"] = (fit_loglog(syn["depth"], syn["d_rel_synthetic"])[0]
                                 if len(syn) >= 2 else float("nan"))
        row["d_rel_synthetic_lo"] = float(syn["d_rel_synthetic"].iloc[0]) if len(syn) else np.nan
        row["d_rel_synthetic_hi"] = float(syn["d_rel_synthetic"].iloc[-1]) if len(syn) else np.nan
        rows.append(row)
    import pandas as pd
    return pd.DataFrame(rows)


def run(args) -> int:
    from pathlib import Path

    import pandas as pd

    from ntk_bridge import kernel_fewshot as kf
    from ntk_bridge.io import save_figure, write_csv, write_json

    config = config_from_args(args)
    out = Path(args.out)
    write_json(out / "config.json", {"command": "kernel-fewshot", **config.as_dict()})
    start = time.time()
    res = kf.run(config, progress=not args.quiet)
    elapsed = time.time() - start
    table = kf.accuracy_table(res["accuracy"])
    dist = res["distances"]
    synthetic = kf.synthetic_distances(args.synthetic)
    merged = vs_synthetic(dist, synthetic)
    rates = rate_rows(merged)
    write_csv(out / "episodes.csv", res["accuracy"])
    write_csv(out / "accuracy.csv", table)
    write_csv(out / "distances.csv", dist)
    write_csv(out / "distance_vs_synthetic.csv", merged)
    write_csv(out / "distance_rates.csv", rates)
    write_csv(out / "timing.csv", res["timing"])
    p = config.predictor
    title = (f"{config.dataset} {config.n_way}-way, {config.n_query} queries/class, {config.train_episodes} training "
             f"episodes ({config.train_split}) / {config.test_episodes} test episodes ({config.test_split}); FC "
             f"{config.net.describe()} on {config.image_size}x{config.image_size} images"
             + (f", conv depth {','.join(map(str, config.conv_depths))} on {config.conv_image_size}x"
                f"{config.conv_image_size} ({config.conv_train_episodes}/{config.conv_test_episodes} episodes)"
                if config.conv_depths else "")
             + f"; inner {p.inner.describe()}, outer t={p.outer_time:g} ridge {p.outer_ridge:g}; seed {config.seed}")
    save_figure(args.figure, kf.plot(table, dist, synthetic, title))
    write_json(out / "run.json", {"seconds": round(elapsed, 1), "title": title,
                                  "interval": "mean +- 1.96 std / sqrt(episodes) over test episodes"})

    print(f"\nKernel few-shot: {title}")
    print(f"done in {elapsed:.1f} s -> {out}/accuracy.csv, episodes.csv, distances.csv; figure {args.figure}")
    for (kernel, shots), g in table.groupby(["kernel", "shots"], sort=True):
        eps, q, tr = int(g["episodes"].iloc[0]), int(g["n_query"].iloc[0]), int(g["train_episodes"].iloc[0])
        print(f"\n{kernel.upper()} kernel, {config.n_way}-way {shots}-shot accuracy %: mean +- 95% CI over {eps} test "
              f"episodes x {q} queries/class ({shots} shots; {tr} training episodes)")
        wide = g.assign(cell=[f"{m:5.1f} +- {h:4.1f}" for m, h in zip(g["acc_mean"], g["acc_ci95"])]).pivot(
            index="method", columns="depth", values="cell")
        wide.columns = [f"L={d}" for d in wide.columns]
        print(wide.to_string())
    pd.set_option("display.width", 200)
    print("\nMTL vs GBML distance d_rel = ||F_a - F_b|| / ||F_b|| over all test queries (FC), real Omniglot "
          "tasks vs the synthetic depth sweep (" + (args.synthetic if synthetic is not None else "not found") + "):")
    show = merged.pivot_table(index=["pair", "shots"], columns="depth", values="d_rel")
    show.columns = [f"L={d}" for d in show.columns]
    print(show.to_string(float_format=lambda v: f"{v:.3f}"))
    if synthetic is not None:
        syn = merged.drop_duplicates(["pair", "depth"]).pivot_table(index="pair", columns="depth",
                                                                     values="d_rel_synthetic")
        syn.columns = [f"L={d}" for d in syn.columns]
        print("synthetic (mean over draws):")
        print(syn.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nfitted rate (slope of log d_rel vs log depth):")
    for r in rates.itertuples():
        print(f"  {r.pair:14s} {r.shots}-shot: real {r.rate_real:+.3f} (d_rel {r.d_rel_lo:.3f} at L={r.depth_lo} -> "
              f"{r.d_rel_hi:.3f} at L={r.depth_hi}); synthetic {r.rate_synthetic:+.3f}")
    for r in res["timing"].itertuples():
        print(f"timing: {r.kernel} {r.shots}-shot: {r.points} points, {r.depths} depths, kernel tiles of "
              f"{r.tile_rows} test rows, {r.groups} group(s) of {r.group_rows} test rows, {r.seconds:.1f} s")
    return 0
