"""MTL vs GBML where the networks learn features: muP and NTK parameterisation side by side.

For each parameterisation (--params ntk,mup; table in ntk_bridge.engine.parameterization), depth, width
and seed, one finite ReLU MLP is trained by full-batch SGD with each method

  head-only  the initial network's head fine-tuned on the test support (the baseline)
  mtl-b      shared body, one head per training task from w_0; test head from w_0, body frozen
  anil       inner loop on the head, second-order outer gradients
  maml       inner loop on all parameters (first order by default: --second-order-maml)

on a task family whose tasks share a known subspace P (--family quadratic: He2 features of P x;
subspace: tanh(P x)). On the unseen test tasks it records each method's test error and gain
over head-only, the alignment of the learned first-layer update with P (principal angles, in
[0, 1]; a random subspace scores rank/d), and for MTL-B vs ANIL and vs MAML: d_rel, d_tr (the
distance over the part of the GBML predictor learned from the training tasks) and the overlap of
the two learned subspaces. Convergence in width: ||F(n) - F(n_prev)|| / ||F(n)|| per method.

Writes OUT/rows.csv (unit x method), OUT/pairs.csv (unit x pair), OUT/table.csv and
OUT/pair_table.csv (means and 95% t-intervals over seeds), OUT/slopes.csv (log-log slopes vs
width, per seed, t-intervals), OUT/verdicts.csv, OUT/config.json, OUT/run.json and the figure,
and prints the verdict per parameterisation, depth and pair at the widest width.

Units are cached (one file per param x depth x width x seed in --cache), so an interrupted run
(ctrl-c, SIGTERM, --budget-minutes) resumes where it stopped (its one line says how many units are
kept); the result folder is written only when
every unit of the grid is done. --quick is the small CI grid.

Examples:
    ntk-bridge feature-map --quick --out /tmp/fm
    ntk-bridge feature-map                      # the committed grid (experiments/results/feature_map)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ntk_bridge.commands._fields import Flag, add_flags, build, str_list
from ntk_bridge.commands._options import FAMILY_FLAGS, NET_STD_FLAGS, add_grid_flags, add_output_flags, grid_options

GRID_FLAGS = (
    Flag("widths", "comma-separated widths"),
    Flag("depths", "comma-separated depths (hidden layers)"),
    Flag("params", "comma-separated parameterisations (ntk, standard, mup)", parse=str_list),
    Flag("base_width", "the width at which muP equals NTK (muP's lr and readout scale are relative to it)"),
    Flag("seeds", "seeds (task draw + network init) per unit"),
    Flag("seed", "first seed; seed i uses seed+i"),
)
TASK_FLAGS = FAMILY_FLAGS + (Flag("family.rank", "rank of the shared subspace P", name="--rank"),)
TRAINING_FLAGS = NET_STD_FLAGS + (
    Flag("inner_step", "inner / test-time step a", name="--inner-step-size"),
    Flag("inner_steps", "inner / test-time steps k"),
    Flag("outer_time", "outer training time eta*t = lr * steps"),
    Flag("lr_fraction", "outer lr * lam_max of the method's infinite-width NTK objective kernel"),
    Flag("dtype", "training precision", choices=("float32", "float64")),
)
FLAGS = GRID_FLAGS + TASK_FLAGS + TRAINING_FLAGS


def _caps(text: str) -> tuple[tuple[int, int], ...]:

    out = []
    for item in (t for t in text.split(",") if t.strip()):
        depth, _, width = item.partition(":")
        try:
            out.append((int(depth), int(width)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"width caps are DEPTH:WIDTH items (got {item!r})") from None
    return tuple(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ntk_bridge.studies.feature_map import FeatureMapConfig

    defaults = FeatureMapConfig()
    g = p.add_argument_group("grid")
    g.add_argument("--quick", action="store_true",
                   help="the small CI grid (widths 64,256, depths 1,2, 2 seeds, 6 training tasks, eta*t=5); "
                        "the grid, task and training options are then ignored")
    add_flags(g, defaults, GRID_FLAGS)
    caps = ",".join(f"{a}:{b}" for a, b in defaults.width_caps) or "none"
    g.add_argument("--width-caps", type=_caps, default=defaults.width_caps, metavar="DEPTH:WIDTH,...",
                   help=f"widest width trained at a depth; '' for none (default {caps})")
    add_flags(p.add_argument_group("tasks"), defaults, TASK_FLAGS)
    g = p.add_argument_group("training")
    add_flags(g, defaults, TRAINING_FLAGS)
    g.add_argument("--second-order-maml", action="store_true",
                   help="MAML with second-order outer gradients (default: first order; second order costs "
                        "2 (k + 1) parameter copies per task)")
    g = p.add_argument_group("output")
    add_output_flags(g, "experiments/results/feature_map", "result folder", "figures/feature_map.png")
    g.add_argument("--cache", default=None, help="unit cache folder (default: .<out name>.cache next to OUT)")
    g.add_argument("--budget-minutes", type=float, default=None,
                   help="stop starting new units after this many minutes; rerun to resume (default: no limit)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_grid_flags(p.add_argument_group("where the units run (ntk_bridge.grid; the results are the same)"), budget=False)


def config_from_args(args):
    from dataclasses import replace

    from ntk_bridge.studies.feature_map import QUICK, FeatureMapConfig

    if args.quick:
        return QUICK
    config = build(FeatureMapConfig(), args, FLAGS)
    return replace(config, width_caps=args.width_caps, first_order_maml=not args.second_order_maml)


def cache_folder(args) -> Path:
    out = Path(args.out)
    return Path(args.cache) if args.cache else out.parent / f".{out.name or 'feature_map'}.cache"


FILES = ("rows.csv", "pairs.csv", "table.csv", "pair_table.csv", "slopes.csv", "verdicts.csv",
         "config.json", "run.json")


def run(args) -> int:
    from ntk_bridge.errors import BridgeError, require
    from ntk_bridge.grid import read_grid, shard_text
    from ntk_bridge.io import check_figure_path, check_settings
    from ntk_bridge.studies import feature_map as fm

    config = config_from_args(args)                  # every check before anything is trained or written
    options = grid_options(args, progress=not args.quiet)
    check_figure_path(args.figure, "--figure")
    out = Path(args.out)
    require(not out.exists() or out.is_dir(), f"--out {out} is a file, not a folder; give a folder path")
    check_settings(out, out, "--out", _settings(config), args.overwrite)
    cache = cache_folder(args)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BridgeError(f"--cache {cache}: cannot create it ({err.strerror}); choose a writable folder") from None
    start, cpu = time.time(), time.process_time()
    try:
        missing = fm.compute(config, cache, progress=not args.quiet, options=options)
    except KeyboardInterrupt as err:            # Ctrl-C / SIGTERM: say what is kept and how to go on
        raise interrupted_line(err, config, cache) from None
    if options.shard is not None:
        print(shard_text(options.shard, read_grid(fm.grid_units(config), cache), len(config.units()), cache))
        return 0
    if missing:
        print(f"stopped after the time budget with {missing} of {len(config.units())} units left; "
              f"rerun the same command to resume (cache {cache})")
        return 0
    _write(args, config, cache, round(time.time() - start, 1), round(time.process_time() - cpu, 1))
    return 0


def interrupted_line(err: KeyboardInterrupt, config, cache: Path):
    """The Interrupted of a stopped grid: how many units are finished and kept in the cache, and that
    rerunning the same command resumes from them (the unit being trained is lost, nothing else)."""
    import signal

    from ntk_bridge.grid import read_grid
    from ntk_bridge.interrupts import Interrupted
    from ntk_bridge.studies import feature_map as fm

    units = config.units()
    done = len(units) - len(read_grid(fm.grid_units(config), cache).missing)
    return Interrupted(getattr(err, "signum", signal.SIGINT),
                       f"{done} of {len(units)} units finished and kept in the cache {cache}; rerun the same "
                       "command to resume from them (the result folder is written when every unit is done)")


def _write(args, config, cache: Path, wall: float, cpu: float) -> None:
    from ntk_bridge.io import result_set, save_figure, write_csv, write_json
    from ntk_bridge.studies import feature_map as fm

    frame, pairs, _ = fm.load(config, cache)
    mt = fm.table(frame, ["param", "depth", "method", "width"],
                  ["test_error", "gain", "alignment", "update_norm", "delta_width"])
    pt = fm.table(pairs, ["param", "depth", "pair", "width"], ["d_rel", "d_tr", "rep_overlap"])
    slopes = _slopes(frame, pairs)
    vs = fm.verdicts(frame, pairs)
    settings = _settings(config)
    title = f"feature map: MTL-B vs ANIL / MAML, muP vs NTK; {config.describe()}"
    with result_set(args.out, args.figure, replaces=FILES, settings=settings,
                    overwrite=args.overwrite) as (tmp, figure):
        for name, t in (("rows", frame), ("pairs", pairs), ("table", mt), ("pair_table", pt), ("slopes", slopes),
                        ("verdicts", fm.verdict_frame(vs))):
            write_csv(tmp / f"{name}.csv", t)
        write_json(tmp / "config.json", settings)
        write_json(tmp / "run.json", {"units": len(config.units()), "seconds_this_run": wall, "cpu_seconds_this_run": cpu,
                                      "cpu_seconds_all_units": round(float(frame["cpu_seconds"].sum()), 1),
                                      "load_average": list(os.getloadavg()), "cache": str(cache)})
        save_figure(figure, fm.plot(frame, pairs, title))
    _print(title, mt, pt, slopes, vs, args)


def _settings(config) -> dict:
    return {"command": "feature-map", **config.as_dict()}


def _slopes(frame, pairs):
    import pandas as pd

    from ntk_bridge.studies import feature_map as fm

    parts = [fm.width_slopes(pairs, m, ["param", "depth", "pair"]) for m in ("d_tr", "d_rel")]
    parts += [fm.width_slopes(frame[frame["method"] != "head-only"], "delta_width", ["param", "depth", "method"])]
    parts += [fm.depth_slopes(pairs, m) for m in ("d_tr", "d_rel")]
    return pd.concat(parts, ignore_index=True)


def _print(title, mt, pt, slopes, vs, args) -> None:
    import pandas as pd

    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    print(f"\n{title}")
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    for metric in ("gain", "alignment", "delta_width"):
        print(f"\n{metric} (mean over seeds; rows param, depth, width):")
        print(mt.pivot_table(index=["param", "depth", "width"], columns="method", values=metric)
              .to_string(float_format=fmt))
    print("\nd_tr and rep_overlap (mean over seeds):")
    print(pt.pivot_table(index=["param", "depth", "width"], columns="pair", values=["d_tr", "rep_overlap"])
          .to_string(float_format=fmt))
    print("\nverdict at the widest width per param x depth x pair (mean +- 95% t-interval over seeds; "
          "gains of MTL-B / the GBML method; d_tr slope vs width: per-seed log-log fits):")
    for v in vs:
        print("  " + v.line())
    depth = slopes[slopes["metric"].str.endswith("vs depth")]
    if len(depth):
        print("\nslope vs depth at the widest width common to all depths (per-seed log-log fits, mean +- 95% t):")
        for r in depth.itertuples():
            print(f"  {r.param:4s} {r.pair:14s} {r.metric:14s} width {int(r.width)}: {r.slope:+.3f} +- {r.slope_ci95:.3f}")
    print("random baseline of alignment and overlap: rank / d")
    print(f"\n-> {args.out}/rows.csv, pairs.csv, verdicts.csv; figure {args.figure}")
