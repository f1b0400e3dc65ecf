"""Where do MTL and GBML meet? The depth study over a grid of regimes (docs/theory.md 7-8).

A regime (cell) is a network x an inner-loop scale x an outer time; each cell is the depth sweep
of `ntk-bridge depth-sweep` with those settings, over depths 1..1024 on the same task draws.

  networks      relu-b0, relu-b0.1, relu-b0.5   ReLU, He init (W_std = sqrt 2), bias std 0 / 0.1 / 0.5
                erf-critical                    Erf on the edge of chaos with q* = 1
                                                (W_std^2 = pi sqrt5 / 4, b_std^2 = 0.184)
  inner loops   fixed        gradient flow, lam*tau = 1 (depth-sweep's default)
                depth-norm   gradient flow, lam*tau = 1 / kappa, kappa = the inner kernel's diagonal
                             (L + 1 for MAML on relu-b0: the NTK divided by its diagonal)
                ridge        T = (K' + 0.1 I)^-1
                tau-inf      T = (K' + 1e-6 I)^-1 (the support interpolated)
  outer times   eta*t = 1, 10 with the rate divided by the mean NTK diagonal (--outer-scale diag,
                a learning rate scaled like 1/depth, as a finite network needs), and t = inf
                (ridge 1e-6)

For every cell: d_rel and d_tr for MTL-B vs ANIL, MTL-B vs MAML (and MTL-A vs ANIL, the collapse
check), each method's test error and its gain over head-only (err_head_only - err_method), the
deep-depth rates (mean of per-draw log-log slopes over L >= --deep-from, with a 95% t-interval).
The verdict per cell: the paper's claim in its strong form holds when d_tr shrinks with depth
(upper end of its rate's interval below -0.1, i.e. at least like L^-0.1) while MTL-B and the GBML
method both beat head-only at the deepest depth (lower ends of both gains' intervals > 0); the
weak form asks the same of d_rel. Why the answer is what it is: docs/theory.md section 8.

Writes OUT/regime_map.csv (one row per cell x depth x pair x draw), OUT/cells.csv (per cell x
pair), OUT/verdicts.csv, OUT/config.json, OUT/run.json and the figure (heatmaps of rates and
gains). OUT is written whole and moved into place at the end; per-(network, draw) units are
cached in CACHE (default: a hidden folder next to OUT) so an interrupted run resumes and a rerun
costs nothing. The units run in this process, on --workers N local processes, on a Dask cluster
(--scheduler ADDRESS), or a share of them per task of a job array (--shard K/N, then the same
command without --shard assembles the results); the results are byte-identical either way. Default grid: 48 cells x 10 draws x 11 depths, a few minutes on 2 cores.

--law CELL computes nothing else and writes nothing: for that one cell (a key as in cells.csv, e.g.
"relu-b0|depth-norm|t=inf") it prints the depth law's predictions (docs/theory.md 8,
ntk_bridge.studies.depth_law; nothing fitted) beside the exact predictors, per depth (--law-depths, default
the grid's depths >= --deep-from), as mean (sd) over the grid's draws. Depths outside the derivation's
conditions are labelled ("outside: shallow" below L = 256, "outside: below the bias onset" below L_b = 2 / b^2,
"transition" up to 24 L_b for ReLU with biases), and every informative amplitude read from the previous depth
says "carried over from the measured depth L0" (the law derives its depth profile, not its amplitude).

Examples:
    ntk-bridge regime-map --quick --out /tmp/rm --figure /tmp/rm.png
    ntk-bridge regime-map --law "erf-critical|fixed|t=inf" --law-depths 256,1024,4096 --draws 5
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ntk_bridge.commands._fields import Flag, add_flags, build
from ntk_bridge.commands._options import add_grid_flags, add_output_flags, grid_options
from ntk_bridge.report.schemas import REGIME_MAP


def _times(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or inf, got {text!r}") from None


# every default is the RegimeMapConfig field's (ntk_bridge.studies.regime_map), stated there once
GRID_FLAGS = (
    Flag("nets", "networks"),
    Flag("inners", "inner-loop scales"),
    Flag("outer_times", "outer times eta*t, inf allowed", parse=_times),
    Flag("outer_scale", "finite outer times: rate divided by the mean NTK diagonal (diag) or not",
         choices=("fixed", "diag")),
    Flag("depths", "depths"),
    Flag("deep_from", "fit deep rates on L >= this"),
    Flag("draws", "task draws per cell; draw i uses seed+i"),
    Flag("seed", "seed of the first draw"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ntk_bridge.studies.regime_map import RegimeMapConfig

    g = p.add_argument_group("grid")
    g.add_argument("--quick", action="store_true",
                   help="the small CI grid (2 networks x 2 inner loops x 2 outer times, depths 1,4,16,64, 2 draws); "
                        "the grid options below are then ignored")
    add_flags(g, RegimeMapConfig(), GRID_FLAGS)
    g = p.add_argument_group("output")
    add_output_flags(g, "experiments/results/regime_map", "result folder", "figures/regime_map.png", "heatmap figure")
    g.add_argument("--cache", default=None, help="cache folder (default: .<out name>.cache next to OUT)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_grid_flags(p.add_argument_group("where the units run (ntk_bridge.grid; the results are the same)"))
    g = p.add_argument_group("the depth law beside the measurement (writes nothing)")
    g.add_argument("--law", metavar="CELL", default=None,
                   help='print predicted vs measured for this cell, e.g. "relu-b0.5|depth-norm|t=10", and stop')
    from ntk_bridge.commands._fields import int_list

    g.add_argument("--law-depths", metavar="L,L,...", default=None, type=int_list,
                   help="depths for --law (default: the grid's depths >= --deep-from)")


def config_from_args(args):
    from dataclasses import replace

    from ntk_bridge.studies.regime_map import QUICK, RegimeMapConfig

    if args.quick:
        return QUICK
    config = build(RegimeMapConfig(), args, GRID_FLAGS)
    return replace(config, depths=tuple(sorted(set(config.depths))))


def cache_folder(args) -> Path:
    out = Path(args.out)
    return Path(args.cache) if args.cache else out.parent / f".{out.name or 'regime_map'}.cache"


def describe(config) -> str:
    """One line naming the data and protocol, for the figure title and the printout."""
    outer = "finite outer times with rate / kappa_out" if config.outer_scale == "diag" else "finite outer times as given"
    return (f"{config.family.describe()}, {config.draws} draws, depths "
            f"{min(config.depths)}..{max(config.depths)}, deep rates over L >= {config.deep_from}, {outer}")


def law_study(args, config):
    """The depth study of the --law cell at --law-depths; every check before any computation."""
    from dataclasses import replace

    from ntk_bridge.errors import require

    cells = {c.key: c for c in config.cells()}
    require(args.law in cells, f"--law {args.law!r} is not a cell of this grid; choose one of: {', '.join(cells)}")
    depths = ([d for d in config.depths if d >= config.deep_from] if args.law_depths is None
              else sorted(set(args.law_depths)))
    require(len(depths) >= 1 and min(depths) >= 1,
            f"--law-depths must be positive integers (got {','.join(map(str, args.law_depths or ()))})")
    study = config.study(cells[args.law])
    return replace(study, depths=tuple(depths), net=replace(study.net, depth=max(depths)))


def run_law(args, config) -> int:
    from ntk_bridge.studies import depth_law
    from ntk_bridge.studies.regime_report import law_comparison_text

    study = law_study(args, config)
    table = depth_law.summarize_comparison(depth_law.compare_cell(study, progress=not args.quiet))
    print(law_comparison_text(table, f"cell {args.law}; {describe(replace_depths(config, study.depths))}"))
    outside = [d for d in study.depths if depth_law.law_conditions(study.net.activation, study.net.b_std, d)]
    if outside:
        print(f"\nnote: depth(s) {', '.join(map(str, outside))} lie outside the derivation's conditions or in the bias "
              "transition (labelled above): read those rows as an extrapolation, not a test of the law")
    return 0


def replace_depths(config, depths):
    from dataclasses import replace

    return replace(config, depths=tuple(depths), deep_from=min(depths)) if len(depths) >= 2 else config


def run(args) -> int:
    from ntk_bridge.grid import read_grid, shard_text
    from ntk_bridge.studies import regime_map

    config = config_from_args(args)                      # every check before anything is computed or written
    if args.law is not None:
        return run_law(args, config)
    options = grid_options(args, progress=not args.quiet)
    settings = {"command": "regime-map", **config.as_dict()}
    _check_outputs(args, settings)
    cache = cache_folder(args)
    _make_cache(cache)
    start = time.time()
    frame = regime_map.compute(config, cache, progress=not args.quiet, options=options)
    elapsed = time.time() - start
    import pandas as pd

    if options.shard is not None or not isinstance(frame, pd.DataFrame):
        print(shard_text(options.shard, read_grid(regime_map.units(config), cache),
                         len(regime_map.units(config)), cache))
        return 0
    _write(args, config, settings, frame, elapsed, cache)
    print(f"\n{len(frame)} rows in {elapsed:.1f} s -> {Path(args.out) / 'regime_map.csv'}, figure {args.figure}")
    return 0


def _check_outputs(args, settings: dict) -> None:
    """The figure's format, --out a folder, its results made with these settings (or --overwrite)."""
    from ntk_bridge.errors import require
    from ntk_bridge.io import check_figure_path, check_settings

    check_figure_path(args.figure, "--figure")
    out = Path(args.out)
    require(not out.exists() or out.is_dir(), f"--out {out} is a file, not a folder; give a folder path")
    check_settings(out, out, "--out", settings, args.overwrite)


def _write(args, config, settings: dict, frame, elapsed: float, cache: Path) -> None:
    from ntk_bridge.io import result_set, save_figure, write_json
    from ntk_bridge.report.schemas import write_table
    from ntk_bridge.studies import regime_map
    from ntk_bridge.studies.regime_report import plot, verdict_frame, verdicts_text

    summary = regime_map.summarize_cells(frame, config.deep_from)
    verdicts = verdict_frame(regime_map.verdicts(summary))
    with result_set(args.out, args.figure, replaces=REGIME_MAP.files(), settings=settings,
                    overwrite=args.overwrite) as (tmp, figure):
        write_json(tmp / REGIME_MAP.file("config"), settings)
        for key, table in (("frame", frame), ("cells", summary), ("verdicts", verdicts)):
            write_table(tmp, REGIME_MAP.parts[key], table)
        write_json(tmp / REGIME_MAP.file("run"), _run_info(elapsed, cache))
        save_figure(figure, plot(summary, describe(config)))
    print(verdicts_text(summary, verdicts, describe(config)))


def _make_cache(cache: Path) -> None:
    from ntk_bridge.errors import BridgeError

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BridgeError(f"--cache {cache}: cannot create it ({err.strerror}); choose a writable folder") from None


def _run_info(elapsed: float, cache: Path) -> dict:
    import platform

    import numpy

    return {"seconds": round(elapsed, 2), "load_average": list(os.getloadavg()), "cache": str(cache),
            "machine": platform.machine(), "cpus": os.cpu_count(), "numpy": numpy.__version__,
            "note": "seconds count only the cells computed in this run; cached cells cost nothing"}

