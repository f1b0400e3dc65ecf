"""Finite networks trained by gradient descent vs the closed forms of docs/theory.md, as width grows.

For each seed (one task draw and one network initialisation) and each width, fully connected
ReLU networks (NTK parameterisation, float64 or --dtype float32) are trained full batch on the squared loss with

  mtl-b      shared body, one head per training task, all heads and the test head from w_0
  mtl-a      shared body, independent random heads; fresh test head
  anil       inner loop on the head only, second-order outer gradients
  maml       inner loop on all parameters, second-order outer gradients
  ntk        the whole network on every training query (no inner loop)
  head-only  the initial network's head fine-tuned on the test support

and the test predictions (after k inner steps / test-time fine-tuning on each test support) are
compared with the closed form of the same method (infinite-width kernels, the network's own
initial outputs f_0 through docs/theory.md's f_0 terms, the same k inner steps and the same S outer
steps of size lr = outer_time / S, so discretisation is not part of the error):

  rel_error = ||F_net - F_closed|| / ||F_closed||   over all test queries of a draw.

Also recorded: the MTL-vs-GBML distances d_rel and d_tr at finite width next to their
infinite-width values, and MTL-A's training-task influence ||F_mtl-a - F_head-only|| / ||F_head-only||
(0 at infinite width). Writes OUT/errors.csv (width x seed x method), OUT/pairs.csv,
OUT/summary.csv (log-log slopes), OUT/error_table.csv, OUT/config.json and the figure (log-log,
fitted slopes). Prints the slopes and the error at the widest width (mean +- 95% CI over seeds).

Cost: the defaults (depth 1, widths 64-8192, 4 seeds, 192 trained networks) took 5 min 14 s wall
(3 min 4 s CPU) on the shared 2-core development machine. Deeper networks cost more per width
(L - 1 width x width layers; the outer step count S grows with the objective kernel's largest
eigenvalue, i.e. with depth); second-order MAML dominates (depth 4, widths 64-512, 4 seeds,
float32: 1524 s wall on the shared machine, 887 s of it MAML at width 512). ``--dtype float32`` trains about twice
as fast on CPU (the closed forms stay float64; see experiments/results/width_sweep/README.md for the
measured float32-vs-float64 gap). A sweep whose widest network cannot fit in memory is refused in
one line before anything is allocated or written.

OUT is written whole into a hidden staging folder and moved into place when the sweep has
finished (ntk_bridge.io.result_folder), locked meanwhile against a second run; a finished OUT made
with other settings is replaced only with --overwrite. Every finished (width, seed, method) unit is
kept at once in the hidden sibling .<OUT name>.resume/ (removed when the sweep is done): Ctrl-C
(exit 130) or SIGTERM (143) stops within a few seconds (the outer steps run in jitted chunks of
about 2 s, ntk_bridge.finite.sweep.chunk_steps), leaves the previous OUT as it was, and the same
command resumes from the kept units, giving the files of an uninterrupted run (the per-network
``seconds`` are those of the run that trained it).

``--combine`` trains nothing: it reads the sweep in --out and in each sub-folder with an
errors.csv (one folder per depth), writes OUT/at_depth.csv (one row per depth x method x width, t
intervals over seeds) and OUT/at_depth_slopes.csv, and the figure (default figures/width_at_depth.png).
``--from-rows`` trains nothing either: it re-makes a finished sweep's tables, run.json and figure
from its config.json, errors.csv and pairs.csv with the current code.

Examples:
    ntk-bridge width-sweep --widths 64,256,1024,4096 --seeds 3 --depth 1
    ntk-bridge width-sweep --combine --out experiments/results/width_sweep
"""

from __future__ import annotations

import argparse
import pathlib
import time

from ntk_bridge.commands._fields import Flag, add_flags, build
from ntk_bridge.commands._options import FAMILY_FLAGS, NET_STD_FLAGS, OVERWRITE_HELP

# every flag's default is the WidthSweepConfig field's (ntk_bridge.finite.sweep), stated there once
SWEEP_FLAGS = (
    Flag("widths", "comma-separated widths"),
    Flag("seeds", "seeds (task draw + network init) per width"),
    Flag("seed", "first seed; seed i uses seed+i"),
    Flag("methods", "comma-separated methods"),
)
NETWORK_FLAGS = (Flag("net.depth", "hidden layers", name="--depth"), *NET_STD_FLAGS)
TASK_FLAGS = FAMILY_FLAGS
TRAINING_FLAGS = (
    Flag("inner_step", "inner / fine-tuning step a", name="--inner-step-size"),
    Flag("inner_steps", "inner / fine-tuning steps k"),
    Flag("outer_time", "function-space outer training time eta*t = lr * steps"),
    Flag("lr_fraction", "outer lr * lam_max of the infinite-width objective kernel (gradient descent diverges at 2)"),
    Flag("dtype", "precision of the finite networks' training (float32 is about twice as fast on CPU; the "
                  "closed forms are always float64)", choices=("float64", "float32")),
)
FLAGS = SWEEP_FLAGS + NETWORK_FLAGS + TASK_FLAGS + TRAINING_FLAGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ntk_bridge.finite.sweep import WidthSweepConfig

    defaults = WidthSweepConfig()
    for title, flags in (("sweep", SWEEP_FLAGS), ("network", NETWORK_FLAGS), ("tasks", TASK_FLAGS),
                         ("training", TRAINING_FLAGS)):
        add_flags(p.add_argument_group(title), defaults, flags)
    g = p.add_argument_group("output")
    g.add_argument("--out", default="experiments/results/width_sweep",
                   help="folder for CSV/JSON (default experiments/results/width_sweep, the committed depth-1 sweep: "
                        "give your own --out for other settings)")
    g.add_argument("--figure", default=None,
                   help="figure path (default figures/width_sweep.png; with --combine figures/width_at_depth.png)")
    g.add_argument("--combine", action="store_true",
                   help="train nothing: combine the per-depth sweeps in --out and its sub-folders into "
                        "OUT/at_depth.csv and the width-at-depth figure")
    g.add_argument("--from-rows", action="store_true",
                   help="train nothing: recompute OUT's summary.csv, error_table.csv, run.json and the figure "
                        "from its config.json, errors.csv and pairs.csv (the rows of a finished sweep)")
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args):
    from ntk_bridge.errors import require
    from ntk_bridge.finite.sweep import WidthSweepConfig

    bad = min(args.widths)
    require(bad >= 1, f"--widths must all be >= 1 (got {bad}); a network needs at least one unit per layer")
    return build(WidthSweepConfig(), args, FLAGS)


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def check_outputs(out, figure) -> None:
    """Refuse, before anything is written, an output folder or figure path that cannot be made."""
    import os
    from pathlib import Path

    from ntk_bridge.errors import require

    out, figure = Path(out), Path(figure)
    require(not out.exists() or out.is_dir(), f"--out {out} is a file; give a folder")
    fmt = figure.suffix.lstrip(".").lower()
    require(fmt in FIGURE_FORMATS, f"--figure {figure}: unsupported format {fmt!r}; use one of {', '.join(FIGURE_FORMATS)}")
    require(not figure.is_dir(), f"--figure {figure} is a folder; give a file name such as {figure / 'f.png'}")
    for what, path in (("--out", out), ("--figure", figure.parent)):
        base = path
        while not base.exists():
            base = base.parent
        require(base.is_dir(), f"{what} {path}: {base} is a file, so the folder cannot be made; choose another path")
        require(os.access(base, os.W_OK), f"{what} {path}: {base} is not writable; choose another path")


def run(args) -> int:
    if args.combine:
        return _combine(args)
    if args.from_rows:
        return _from_rows(args)
    from pathlib import Path

    from ntk_bridge.finite.sweep import check_cost

    config = config_from_args(args)
    check_cost(config)                       # before any allocation or JAX import
    figure = args.figure or "figures/width_sweep.png"
    check_outputs(args.out, figure)
    return _sweep(config, Path(args.out), figure, quiet=args.quiet, overwrite=args.overwrite)


def _combine(args) -> int:
    from pathlib import Path

    from ntk_bridge.finite import at_depth
    from ntk_bridge.io import output_lock

    figure = args.figure or "figures/width_at_depth.png"
    check_outputs(args.out, figure)
    with output_lock(Path(args.out).absolute(), "--out", Path(args.out)):   # not while a sweep writes it
        at_depth.main(args.out, figure)
    return 0


def _title(config) -> str:
    fam = config.family
    return (f"width sweep: depth {config.net.depth} {config.net.describe()}; {fam.family} tasks d={fam.d}, "
            f"{fam.n_train_tasks} train / {fam.n_test_tasks} test tasks, n_q={fam.n_query}, n_s={fam.n_support}; "
            f"inner {config.inner.describe()}; outer eta*t={config.outer_time:g} (lr*lam_max={config.lr_fraction:g}); "
            f"{config.dtype}; {config.seeds} seeds")


def resume_folder(out) -> "pathlib.Path":
    """Where the finished units of sweeps into ``out`` wait for a resume: the hidden sibling
    ``.<out name>.resume/`` (one sub-folder per unit settings, ntk_bridge.finite.sweep.UnitStore)."""
    from pathlib import Path

    out = Path(out)
    return out.parent / f".{out.name}.resume"


def _sweep(config, out, figure: str, quiet: bool, overwrite: bool = False) -> int:
    """Train into a staging folder (OUT moves into place at the end, locked meanwhile), every
    finished (width, seed, method) unit kept in :func:`resume_folder` so that a stopped sweep resumes."""
    import shutil

    from ntk_bridge.finite import sweep
    from ntk_bridge.interrupts import Interrupted
    from ntk_bridge.io import result_set, write_json
    from ntk_bridge.report.schemas import WIDTH_SWEEP, write_table

    settings = {"command": "width-sweep", **config.as_dict()}
    with result_set(out, figure, replaces=WIDTH_SWEEP.files(), settings=settings,
                    overwrite=overwrite) as (tmp, fig):
        store = sweep.UnitStore.for_config(resume_folder(out), config)
        if len(store) and not quiet:
            print(f"resuming: {len(store)} finished units in {store.folder}", flush=True)
        start = time.time()
        try:
            errors, pairs = sweep.run(config, progress=not quiet, store=store)
        except KeyboardInterrupt as err:
            raise Interrupted(getattr(err, "signum", 2),
                              f"{len(store)} finished (width, seed, method) units kept in {store.folder}; "
                              f"rerun the same command to resume; {out} is as it was") from None
        write_json(tmp / WIDTH_SWEEP.file("config"), settings)
        write_table(tmp, WIDTH_SWEEP.parts["errors"], errors)
        write_table(tmp, WIDTH_SWEEP.parts["pairs"], pairs)
        printout = _summarize(config, errors, pairs, tmp, fig, time.time() - start)
    shutil.rmtree(store.folder, ignore_errors=True)
    with __import__("contextlib").suppress(OSError):
        resume_folder(out).rmdir()
    printout(out, figure)
    return 0


def _summarize(config, errors, pairs, out, figure, elapsed: float):
    """Write summary.csv, error_table.csv, the figure and the final run.json into ``out`` / ``figure``;
    returns ``printout(out, figure)``, which prints the tables naming the final paths."""
    from ntk_bridge.finite import sweep
    from ntk_bridge.io import save_figure, write_json
    from ntk_bridge.report.schemas import WIDTH_SWEEP, write_table

    slopes = sweep.slope_table(errors, pairs)
    table = sweep.error_table(errors)
    dist = sweep.distance_table(pairs) if len(pairs) else pairs
    fam = config.family
    measured = (f"{fam.n_test_tasks} test tasks x {fam.n_query} queries per draw, "
                f"{config.seeds} seeds (draw + init), mean +- 95% t-interval (t quantile, n - 1 dof, n = seeds)")
    title = _title(config)
    fig = sweep.plot(errors, pairs, slopes, title)
    write_table(out, WIDTH_SWEEP.parts["summary"], slopes)
    write_table(out, WIDTH_SWEEP.parts["table"], table)
    save_figure(figure, fig)
    failed = int((errors["failed"].fillna("") != "").sum()) if "failed" in errors else 0
    write_json(out / WIDTH_SWEEP.file("run"), {"complete": True, "widths_done": sorted(int(w) for w in errors["width"].unique()),
                                               "seconds": round(elapsed, 1), "rows": len(errors), "failed": failed,
                                               "measured": measured, "slopes": slopes.to_dict(orient="records")})
    return lambda shown_out, shown_figure: _print(title, errors, table, slopes, dist, measured, elapsed,
                                                  shown_out, shown_figure)


def _from_rows(args) -> int:
    """--from-rows: the tables, figure and run.json again from OUT's config.json and rows."""
    from pathlib import Path

    import pandas as pd

    from ntk_bridge.errors import require

    out = Path(args.out)
    figure = args.figure or "figures/width_sweep.png"
    check_outputs(out, figure)
    for name in ("config.json", "errors.csv", "pairs.csv", "run.json"):
        require((out / name).is_file(), f"--from-rows: {out / name} is missing; run the sweep first")
    from ntk_bridge.io import read_json

    run = read_json(out / "run.json", "rerun the sweep")
    require(isinstance(run, dict), f"--from-rows: {out / 'run.json'} is not a JSON object; rerun the sweep")
    require(run.get("complete", "rows" in run), f"--from-rows: {out} is an unfinished sweep (run.json); rerun it")
    config = _config_from_saved(read_json(out / "config.json", "rerun the sweep"))
    errors, pairs = pd.read_csv(out / "errors.csv"), pd.read_csv(out / "pairs.csv")
    if "failed" not in errors:
        errors["failed"] = ""
    from ntk_bridge.io import output_lock

    with output_lock(out.absolute(), "--out", out):                       # not while a sweep writes it
        printout = _summarize(config, errors, pairs, out, figure, float(run.get("seconds") or float("nan")))
    printout(out, figure)
    return 0


def _config_from_saved(saved: dict):
    """The WidthSweepConfig of a saved config.json (fields missing there take their defaults)."""
    from ntk_bridge.closed_form.tasks import FamilyConfig
    from ntk_bridge.engine.spec import NetSpec
    from ntk_bridge.finite.sweep import WidthSweepConfig

    fields = {k: v for k, v in saved.items() if k in WidthSweepConfig.__dataclass_fields__}
    fields["net"] = NetSpec(**saved["net"])
    fields["family"] = FamilyConfig(**saved["family"])
    for key in ("widths", "methods"):
        fields[key] = tuple(fields[key])
    fields["pairs"] = tuple(tuple(p) for p in fields["pairs"])
    return WidthSweepConfig(**fields)


def _print(title, errors, table, slopes, dist, measured, elapsed, out, figure) -> None:
    import pandas as pd

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(f"\n{title}")
    print(f"{len(errors)} trained networks in {elapsed:.1f} s -> {out}/errors.csv, figure {figure}")
    bad = errors[errors["failed"].fillna("") != ""]
    for r in bad.itertuples():
        print(f"  FAILED: {r.failed}")
    print(f"\nrel_error = ||F_net - F_closed|| / ||F_closed|| over {measured}:")
    wide = table.pivot(index="width", columns="method", values="rel_error")
    print(wide.to_string(float_format=lambda v: f"{v:.4f}"))
    print("\nlog-log slope of error vs width (fit of the seed mean; per-seed fits mean +- 95% t-interval) and "
          "error at the widest width (mean +- 95% t-interval):")
    for r in slopes.itertuples():
        print(f"  {r.quantity:16s} slope {r.slope:+.3f}  (per seed {r.slope_seed_mean:+.3f} +- {r.slope_seed_ci95:.3f}, n={r.seeds})"
              f"   at width {r.widest}: {r.at_widest:.4f} +- {r.at_widest_ci95:.4f}")
    if len(dist):
        print("\nMTL vs GBML distance, finite width next to the closed form (mean over the same seeds):")
        widest = dist[dist["width"] == dist["width"].max()]
        for r in widest.itertuples():
            if r.pair == "mtl-a vs head-only":
                continue
            print(f"  {r.pair:18s} width {r.width}: d_rel net {r.d_rel_net:.4f} vs closed {r.d_rel_closed:.4f}; "
                  f"d_tr net {r.d_tr_net:.4f} vs closed {r.d_tr_closed:.4f} (n={r.seeds})")
