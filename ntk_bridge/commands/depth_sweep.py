"""Distance between MTL and GBML infinite-width predictors as depth grows (the main job).

For each random draw of synthetic tasks (training tasks plus unseen test tasks, inputs on the
sphere of radius sqrt(d)), the NTK Theta and its head share K are computed on every point for
all depths in one pass; the closed-form predictors of docs/theory.md (MTL-B, MTL-A, ANIL, MAML and
the head-only baseline K T' Y') predict the test queries, and each pair is compared with

    d_rel = ||F_a - F_b|| / ||F_b||     and     d_tr = ||F_a - F_b|| / ||F_b - F_b(t=0)||.

Writes OUT/depth_sweep.csv (one row per depth x pair x draw), OUT/summary.csv (fitted log-log
rates), OUT/errors.csv (test error per depth and method, mean and 95% CI over draws),
OUT/config.json, and the figure (distances and test errors vs depth). Prints the summary.
Intervals are mean +- t(0.975, n-1) * std / sqrt(n) over the n draws (none for one draw).

OUT is written whole into a hidden staging folder next to it and moved into place when the sweep
has finished (ntk_bridge.io.result_folder): an interrupted or failed sweep leaves the previous
OUT untouched, and `ntk-bridge report` never reads a half-written one. Every option, the output
paths and the figure format are checked before anything is computed or written.

Example:
    ntk-bridge depth-sweep --depths 1,4,16,64 --draws 5 --family subspace --inner ridge --inner-ridge 0.1
"""

from __future__ import annotations

import argparse
import time

from ntk_bridge.commands._fields import Flag, add_flags, build
from ntk_bridge.commands._options import (
    ACTIVATION_FLAG,
    FAMILY_FLAGS,
    NET_STD_FLAGS,
    add_output_flags,
    add_predictor_arguments,
    predictor_config,
)
from ntk_bridge.report.schemas import DEPTH_SWEEP

SWEEP_FLAGS = (
    Flag("depths", "comma-separated depths (hidden layers)"),
    Flag("draws", "random task draws"),
    Flag("seed", "seed of the first draw; draw i uses seed+i"),
)
NETWORK_FLAGS = (ACTIVATION_FLAG, *NET_STD_FLAGS)
TASK_FLAGS = FAMILY_FLAGS + (
    Flag("family.spread", "how far task heads scatter around the shared one", name="--spread"),
    Flag("family.noise", "label noise std", name="--noise"),
)
FLAGS = SWEEP_FLAGS + NETWORK_FLAGS + TASK_FLAGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags; every default is the field default of DepthStudyConfig (its NetSpec, FamilyConfig)."""
    from ntk_bridge.studies.depth_sweep import DepthStudyConfig

    defaults = DepthStudyConfig()
    for title, flags in (("sweep", SWEEP_FLAGS), ("network (infinite width)", NETWORK_FLAGS), ("tasks", TASK_FLAGS)):
        add_flags(p.add_argument_group(title), defaults, flags)
    add_predictor_arguments(p, outer_ridge_help="ridge on Phi / Theta_MTL when t = inf")
    g = p.add_argument_group("output")
    add_output_flags(g, "experiments/results/depth_sweep", "folder for CSV/JSON, where `ntk-bridge report` looks",
                     "figures/depth_sweep.png")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def check_rank(family: str, d: int) -> None:
    """The subspace family draws ``rank`` directions in R^d, so it needs --d >= its rank."""
    from ntk_bridge.closed_form.tasks import FamilyConfig
    from ntk_bridge.errors import require

    rank = FamilyConfig.rank
    require(family != "subspace" or d >= rank,
            f"--d {d} is smaller than the subspace family's rank {rank} (the number of shared "
            f"directions, fixed in ntk_bridge.closed_form.tasks.FamilyConfig): use --d {rank} or more, or --family teacher")


def config_from_args(args):
    """The DepthStudyConfig of the flags (the FC net built at the deepest depth)."""
    import dataclasses

    from ntk_bridge.errors import require
    from ntk_bridge.studies.depth_sweep import DepthStudyConfig

    require(min(args.depths) >= 1, f"--depths must all be >= 1 (got {min(args.depths)})")
    check_rank(args.family__family, args.family__d)
    defaults = DepthStudyConfig()
    defaults = dataclasses.replace(defaults, net=dataclasses.replace(defaults.net, depth=max(args.depths)))
    return dataclasses.replace(build(defaults, args, FLAGS), predictor=predictor_config(args))


def describe(config) -> str:
    """One-line description of the sweep for the figure title and the printout."""
    return (f"{config.family.describe()}, {config.net.describe()}, "
            f"inner: {config.predictor.inner.describe()}, outer t={config.predictor.outer_time:g}, "
            f"{config.draws} draws")


def run(args) -> int:
    from pathlib import Path

    from ntk_bridge.io import result_set, save_figure, write_json
    from ntk_bridge.report.schemas import write_table
    from ntk_bridge.studies import depth_sweep as depth_study

    config = config_from_args(args)                       # every check before anything is written
    out = Path(args.out)
    settings = {"command": "depth-sweep", **config.as_dict()}
    with result_set(out, args.figure, replaces=DEPTH_SWEEP.files(), settings=settings,
                    overwrite=args.overwrite) as (tmp, figure):
        write_json(tmp / DEPTH_SWEEP.file("config"), settings)
        start = time.time()
        frame = depth_study.run(config, progress=not args.quiet)
        elapsed = time.time() - start
        summary = depth_study.summarize(frame)
        errors = depth_study.error_table(frame)
        for key, table in (("frame", frame), ("summary", summary), ("errors", errors)):
            write_table(tmp, DEPTH_SWEEP.parts[key], table)
        save_figure(figure, depth_study.plot(frame, errors, describe(config)))
    print_results(config, frame, summary, errors, elapsed, out, args.figure)
    return 0


def print_results(config, frame, summary, errors, elapsed, out, figure) -> None:
    """The printed summary: distances and rates per pair, test errors at the extreme depths."""
    import pandas as pd

    from ntk_bridge.stats import CI95_TEXT, format_mean_ci
    from ntk_bridge.studies.depth_sweep import DEEP_DEPTH

    fam = config.family
    pd.set_option("display.width", 160)
    print(f"\nDepth sweep: {describe(config)}")
    print(f"{len(frame)} rows in {elapsed:.1f} s -> {out / 'depth_sweep.csv'}, figure {figure}\n")
    print("Distances (mean over draws) and fitted rates: slope of log(distance) vs log(depth)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if f"rate_d_rel_L>={DEEP_DEPTH}" not in summary.columns:
        print(f"(no rate_d_rel_L>={DEEP_DEPTH}: fewer than two depths are >= {DEEP_DEPTH})")
    lo, hi = errors["depth"].min(), errors["depth"].max()
    print(f"\nTest error ||F-Y||^2/||Y||^2 (1 = predicting zero), mean +- {CI95_TEXT} over n = {config.draws} "
          f"draws of {fam.n_test_tasks} test tasks x {fam.n_query} queries:")
    cells = errors[errors["depth"].isin([lo, hi])].set_index(["method", "depth"])
    for method in cells.index.get_level_values("method").unique():
        text = [f"L={d}: " + format_mean_ci(cells.loc[(method, d), "err_mean"], cells.loc[(method, d), "err_ci95"],
                                            int(cells.loc[(method, d), "draws"])) for d in sorted({lo, hi})]
        print(f"  {method:10s} " + "   ".join(text))
    head = cells.loc[("head-only", lo), "err_mean"]
    others = [m for m in cells.index.get_level_values("method").unique() if m != "head-only"]
    better = [m for m in others if cells.loc[(m, lo), "err_mean"] < head]
    worse = [m for m in others if m not in better]
    print(f"\nAt depth {lo}: better than the head-only baseline K T'Y' ({head:.3f}): {', '.join(better) or 'none'}"
          + (f"; not better: {', '.join(worse)}" if worse else ""))
