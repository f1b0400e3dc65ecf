"""Closed-form kernel predictors (MTL-A, MTL-B, ANIL, MAML, head-only, NTK) on real few-shot tasks.

Episodes come from a real data set (default: Omniglot from the project's data folder; training
episodes from the training alphabets, test episodes from the held-out test alphabets). Images
are block-averaged to --image-size, centred by the training split's per-pixel mean and put on the
sphere of radius sqrt(d). Every episode is the same for every kernel and label space (seeded by
--seed and the shots). For every depth of the fully connected ReLU kernel (one pass of the layer
recursion gives all depths), every predictor's accuracy is measured per test episode and reported
as mean +- 95% t-interval over the test episodes (t quantile, n = episodes), with the number of
episodes, queries per class and shots beside it.

Label spaces (--labels, comma-separated; every predictor regresses a task's points onto its
classes' codes; a test query is given the class whose code is nearest to its output, among its
own episode's n_way classes):
  random-slots  the usual protocol: slot j of every episode is the one-hot target j, whatever the
                class, so nothing in the labels is shared across tasks.
  global        the head-bank analogue: one output per base class (all C classes of the training
                split); a training task regresses onto its classes' one-hot rows among the C. A
                held-out test class has no row in the bank, so, like a fresh head at test time, slot j
                of a test episode gets a fresh output j (a test class that is a base class keeps its
                own row). Exact consequence in the kernel regime: the training tasks' targets on the
                fresh outputs are 0, so MTL-B and ANIL decide as head-only, MAML as head-only with
                Theta, and NTK regression has nothing to say (ties, chance).
  encoding      learned class encodings: --encoder RUN_DIR, a Conv-4 trained by `ntk-bridge train`
                on the same training classes, maps each base class to the mean of its images'
                features (--encoding mean-feature) or to its head-bank row (head-row, MTL runs);
                targets are those vectors minus their mean over the base classes. A test class is
                encoded by the mean feature of its episode's support images (its prototype). The
                trained network itself (its features with the proto and logreg heads) is scored on
                the identical test episodes.

Convolutional kernel (--conv-depths, default 1,2,4,8): [Conv 3x3 + Relu] x L + global average pool
+ Dense, infinite channels (the project's engine, ntk_bridge.engine.conv_engine: neural-tangents' numbers to
1e-10), all depths in one pass of the layer recursion, --conv-tile image pairs per engine step, a set
against itself computed once per pair, and cached in --conv-cache by a SHA-256 of (images, network
spec), so a rerun costs no kernel time. It costs O((H W)^2 L) per pair of images (float64, all depths
1-8, per wall second on 2 idle cores: ~11,000 entries at 7x7, ~740 at 14x14, ~46 at 28x28, a set with
itself 1.6-2.3x that; see experiments/results/bench/bench_conv_kernels.txt): the default uses 4x4 images (--conv-image-size)
and the first --conv-train-episodes / --conv-test-episodes episodes. Kernel entries per second are
reported.

Kernels over a few thousand images are never formed whole: the training block is computed once
and the test tasks' kernels are evaluated in tiles of --tile-rows points (printed), their
predictions made in groups of --group-rows points.

Writes OUT/episodes.csv (accuracy per episode), OUT/accuracy.csv (mean +- CI table),
OUT/distances.csv, OUT/distance_vs_synthetic.csv, OUT/distance_rates.csv, OUT/timing.csv, OUT/comparison.csv
(each method at the depth chosen on a validation run's episodes, --depth-validation; else at the smallest depth),
OUT/config.json, OUT/run.json, the figure, and prints the summary; the result folder is written
whole or not at all. The MTL-vs-GBML distances d_rel and d_tr are measured on each test query's
class scores (its outputs projected on its episode's codes) and printed next to those of the
synthetic depth sweep (--synthetic; by default the repository's committed one, found whatever the
working folder).

Example (the committed table, experiments/results/kernel_fewshot/README.md):
    ntk-bridge kernel-fewshot --labels random-slots,global,encoding --encoder runs/kf_encoder_mtl \\
        --trained runs/kf_encoder_protonet
(about 14 minutes on 2 shared cores; the two run folders come from `ntk-bridge train`, commands there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ntk_bridge.commands._fields import Flag, add_flags, build, int_list, int_list_or_none, int_or_auto
from ntk_bridge.commands._options import (
    ACTIVATION_FLAG,
    NET_STD_FLAGS,
    add_output_flags,
    add_predictor_arguments,
    predictor_config,
)
from ntk_bridge.report.schemas import KERNEL_FEWSHOT

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SYNTHETIC = REPO / "experiments" / "results" / "depth_sweep" / "depth_sweep.csv"
DEFAULT_CACHE = Path.home() / ".cache" / "ntk_bridge" / "conv_kernels"


def label_list(text: str) -> tuple[str, ...]:
    """Parse "random-slots,global" into a tuple of label-space names."""
    from ntk_bridge.studies.label_spaces import LABEL_SPACES

    names = tuple(v.strip() for v in text.split(","))
    bad = [v for v in names if v not in LABEL_SPACES]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct label spaces among {', '.join(LABEL_SPACES)}, got {text!r}")
    return names


def command_defaults():
    """The command's defaults, one FewShotConfig: the dataclass's, plus the conv kernel at depths
    1,2,4,8 with the on-disk cache (a library caller opts into both; the command runs them)."""
    from ntk_bridge.studies.kernel_fewshot import FewShotConfig
    return FewShotConfig(conv_depths=(1, 2, 4, 8), conv_cache=str(DEFAULT_CACHE))


def _labels_shown(v) -> str:
    return ",".join(v) + "; encoding needs --encoder"


EPISODE_FLAGS = (
    Flag("dataset", "data set"),
    Flag("root", "data folder", parse=str, shown=lambda v: "the project's Omniglot folder" if v is None else v),
    Flag("train_split", "split of the training tasks"),
    Flag("test_split", "split of the test tasks"),
    Flag("n_way", "classes per episode"),
    Flag("shots", "comma-separated shot settings"),
    Flag("n_query", "queries per class"),
    Flag("train_episodes", "training tasks"),
    Flag("test_episodes", "test tasks"),
    Flag("image_size", "images block-averaged to SIZE x SIZE"),
    Flag("centre", "subtract the training split's per-pixel mean, each image's mean, or nothing",
         choices=("pixel", "image", "none")),
    Flag("seed", "episode sampling seed"),
)
LABEL_FLAGS = (
    Flag("labels", "comma-separated label spaces among random-slots, global, encoding", parse=label_list,
         shown=_labels_shown),
    Flag("encoder", "run folder of `ntk-bridge train` (Conv-4 on the same training classes) for --labels encoding",
         parse=str, shown=lambda v: "none" if v is None else v),
    Flag("encoding", "base-class encoding: mean feature of the class's training images or its head-bank row "
                     "(MTL runs)", choices=("mean-feature", "head-row")),
)
FC_FLAGS = (
    ACTIVATION_FLAG, *NET_STD_FLAGS,
    Flag("tile_rows", "test points per kernel evaluation call (memory: 2 x depths x tile x train points x 8 bytes)"),
    Flag("group_rows", "test points whose predictions share one assembled Gram (memory per depth: "
                       "2 x (train points + group)^2 x 8 bytes); training-side solves are redone per group"),
)
CONV_FLAGS = (
    Flag("conv_depths", "conv depths, one pass; 'none' to skip", parse=int_list_or_none),
    Flag("conv_image_size", "image size for the conv kernel (it costs (size^2)^2 per pair)"),
    Flag("conv_train_episodes", "first N training episodes"),
    Flag("conv_test_episodes", "first N test episodes"),
    Flag("conv_tile", "image pairs per conv engine step (memory ~ TILE x (size^2)^2 x 8 bytes x 7-9); 'auto': the "
                      "engine's default, a state array within 2 MiB on a CPU (1 pair at 28x28, 4 at 14x14)",
         parse=int_or_auto, shown=lambda v: "auto" if v is None else str(v)),
    Flag("conv_cache", "folder of cached conv kernels, one .npz per (images, spec) hash; 'none': no cache", parse=str),
)
FLAGS = EPISODE_FLAGS + LABEL_FLAGS + FC_FLAGS + CONV_FLAGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags; every default is a field of :func:`command_defaults` (stated there once)."""
    defaults = command_defaults()
    add_flags(p.add_argument_group("episodes"), defaults, EPISODE_FLAGS)
    g = p.add_argument_group("label spaces (see above)")
    add_flags(g, defaults, LABEL_FLAGS)
    g.add_argument("--trained", action="append", default=[], metavar="RUN_DIR",
                   help="a run folder of `ntk-bridge train` (any algorithm, same training classes) whose network is "
                        "scored on the identical test episodes (frozen features, proto and logreg heads); "
                        "repeatable; the --encoder run is always scored")
    g = p.add_argument_group("fully connected kernel (infinite width)")
    g.add_argument("--depths", type=int_list, default=defaults.depths,
                   help=f"comma-separated depths, one recursion pass (default {','.join(map(str, defaults.depths))})")
    add_flags(g, defaults, FC_FLAGS)
    add_flags(p.add_argument_group("convolutional kernel"), defaults, CONV_FLAGS)
    add_predictor_arguments(p, outer_ridge_help="ridge on Phi / Theta_MTL / Theta when t = inf")
    g = p.add_argument_group("output")
    add_output_flags(g, "experiments/results/kernel_fewshot", "results folder", "figures/kernel_fewshot.png")
    g.add_argument("--synthetic", default=None,
                   help="the synthetic depth sweep's depth_sweep.csv, shown beside the real-task distances "
                        f"(default: the repository's {DEFAULT_SYNTHETIC.relative_to(REPO)}, skipped with a note if "
                        "absent; 'none': skip)")
    g.add_argument("--depth-validation", default=None, metavar="RUN_DIR",
                   help="a finished kernel-fewshot run on validation episodes (--test-split val, same kernels "
                        "and label spaces): comparison.csv then holds each method at the depth chosen on ITS "
                        "accuracy; without it, at the smallest depth (never chosen on this run's test episodes)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args):
    """The FewShotConfig of the flags: the derived ones, then depths (sorted; the FC net is built at
    the deepest), conv depths sorted, --conv-cache none, the --trained run folders and the predictor."""
    import dataclasses

    from ntk_bridge.errors import require

    require(len(args.depths) >= 1, "--depths is empty; give at least one depth")
    require(len(args.shots) >= 1, "--shots is empty; give e.g. 1,5")
    config = build(command_defaults(), args, FLAGS)
    cache = None if config.conv_cache is None or config.conv_cache.strip().lower() == "none" else config.conv_cache
    depths = tuple(sorted(set(args.depths)))
    return dataclasses.replace(
        config, shots=tuple(config.shots), depths=depths, net=dataclasses.replace(config.net, depth=max(depths)),
        conv_depths=tuple(sorted(set(config.conv_depths))), conv_cache=cache, labels=tuple(config.labels),
        trained=tuple(args.trained), predictor=predictor_config(args))


def vs_synthetic(dist, synthetic):
    """Real-task distances (FC) per label space, pair, shots and depth, with the synthetic mean at the same depth."""
    import pandas as pd

    real = dist[dist["kernel"] == "fc"][["labels", "pair", "shots", "depth", "d_rel", "d_tr", "d_rel_ep_ci95", "agree"]]
    if synthetic is None:
        real = real.assign(d_rel_synthetic=float("nan"), d_tr_synthetic=float("nan"))
        return real.reset_index(drop=True)
    syn = synthetic.rename(columns={"d_rel": "d_rel_synthetic", "d_tr": "d_tr_synthetic"})
    return pd.merge(real, syn, on=["pair", "depth"], how="left").reset_index(drop=True)


def rate_rows(merged):
    """Slope of log d_rel vs log depth per label space, pair and shots, real and synthetic (same depths);
    NaN where fewer than two depths (or no synthetic sweep)."""
    import numpy as np
    import pandas as pd

    from ntk_bridge.stats import fit_loglog

    def slope(depth, values):
        ok = np.isfinite(values) & (values > 1e-12)       # identically-zero distances (rounding) have no rate
        return fit_loglog(depth[ok], values[ok])[0] if ok.sum() >= 2 else float("nan")

    rows = []
    for (labels, pair, shots), g in merged.groupby(["labels", "pair", "shots"], sort=True):
        d, rel, syn = g["depth"].to_numpy(), g["d_rel"].to_numpy(), g["d_rel_synthetic"].to_numpy()
        rows.append({"labels": labels, "pair": pair, "shots": shots, "depth_lo": int(d.min()), "depth_hi": int(d.max()),
                     "d_rel_lo": float(rel[0]), "d_rel_hi": float(rel[-1]), "rate_real": slope(d, rel),
                     "rate_synthetic": slope(d, syn), "d_rel_synthetic_lo": float(syn[0]),
                     "d_rel_synthetic_hi": float(syn[-1])})
    return pd.DataFrame(rows)


def resolve_synthetic(option: str | None):
    """(path or None, note): the synthetic sweep to show. An explicit path that does not exist is an error;
    the default (the repository's committed sweep, independent of the working folder) may be absent."""
    from ntk_bridge.errors import require

    if option is not None and option.strip().lower() == "none":
        return None, "synthetic depth sweep: skipped (--synthetic none)"
    if option is None:
        if DEFAULT_SYNTHETIC.is_file():
            return DEFAULT_SYNTHETIC, f"synthetic depth sweep: {DEFAULT_SYNTHETIC}"
        return None, (f"synthetic depth sweep: not shown ({DEFAULT_SYNTHETIC} does not exist; run "
                      "`ntk-bridge depth-sweep` or give --synthetic)")
    path = Path(option)
    require(path.is_file(), f"--synthetic {path} does not exist; give a depth_sweep.csv of `ntk-bridge depth-sweep` "
                            "or 'none'")
    return path, f"synthetic depth sweep: {path}"


def comparison(table, validation=None):
    """Per shots, kernel, label space and method: the accuracy at the depth chosen on ``validation``
    (the accuracy table of a run on validation episodes; :func:`ntk_bridge.report.selection.choose_depths`),
    or at the smallest depth without one; never chosen on ``table``'s own (test) episodes. The
    column ``chosen_by`` says which rule chose each row."""
    from ntk_bridge.report.selection import choose_depths

    chosen = choose_depths(table, validation)
    return chosen.sort_values(["shots", "kernel", "labels", "acc_mean"], ascending=[True, True, True, False])


def read_depth_validation(option: str | None):
    """The accuracy table of --depth-validation RUN_DIR, or None; one-line errors for a bad folder."""
    if option is None:
        return None
    import pandas as pd

    from ntk_bridge.errors import BridgeError, require

    path = Path(option) / KERNEL_FEWSHOT.file("accuracy")
    require(path.is_file(), f"--depth-validation {option}: no {path.name} there; give the folder of a finished "
                            "`ntk-bridge kernel-fewshot --test-split val` run")
    try:
        return pd.read_csv(path)
    except (ValueError, OSError) as err:
        raise BridgeError(f"--depth-validation {path}: not a readable CSV ({err}); re-run the validation run") from None


def title_of(config) -> str:
    """The run's one-line description (figure title, run.json)."""
    p = config.predictor
    return (f"{config.dataset} {config.n_way}-way, {config.n_query} queries/class, {config.train_episodes} training "
            f"episodes ({config.train_split}) / {config.test_episodes} test episodes ({config.test_split}); labels "
            f"{','.join(config.labels)}" + (f" (encoder {config.encoder}, {config.encoding})" if config.encoder else "")
            + f"; FC {config.net.describe()} on {config.image_size}x{config.image_size} images"
            + (f", conv depth {','.join(map(str, config.conv_depths))} on {config.conv_image_size}x"
               f"{config.conv_image_size} ({config.conv_train_episodes}/{config.conv_test_episodes} episodes)"
               if config.conv_depths else "")
            + f"; inner {p.inner.describe()}, outer t={p.outer_time:g} ridge {p.outer_ridge:g}; seed {config.seed}")


def run(args) -> int:
    from ntk_bridge.io import check_figure_path, result_set, save_figure, write_json
    from ntk_bridge.report.schemas import write_table
    from ntk_bridge.studies import kernel_fewshot as kf

    config = config_from_args(args)
    check_figure_path(args.figure, "--figure")
    synthetic_path, synthetic_note = resolve_synthetic(args.synthetic)
    validation = read_depth_validation(args.depth_validation)
    synthetic = kf.synthetic_distances(synthetic_path) if synthetic_path is not None else None
    out = Path(args.out)
    settings = {"command": "kernel-fewshot", **config.as_dict()}
    with result_set(out, args.figure, replaces=KERNEL_FEWSHOT.files(), settings=settings,
                    overwrite=args.overwrite) as (tmp, figure):
        start = time.time()
        res = kf.run(config, progress=not args.quiet)
        elapsed = time.time() - start
        table = kf.accuracy_table(res["accuracy"])
        merged = vs_synthetic(res["distances"], synthetic)
        rates = rate_rows(merged)
        title = title_of(config)
        write_json(tmp / KERNEL_FEWSHOT.file("config"), settings)
        for key, frame in (("episodes", res["accuracy"]), ("accuracy", table), ("distances", res["distances"]),
                           ("vs_synthetic", merged), ("rates", rates), ("timing", res["timing"]),
                           ("comparison", comparison(table, validation))):
            write_table(tmp, KERNEL_FEWSHOT.parts[key], frame)
        save_figure(figure, kf.plot(table, res["distances"], synthetic, title))
        write_json(tmp / KERNEL_FEWSHOT.file("run"), {
            "seconds": round(elapsed, 1), "title": title, "synthetic": synthetic_note,
            "interval": "mean +- t(0.975, n-1) std / sqrt(n) over the n test episodes"})
    summarise(config, title, elapsed, out, args.figure, table, merged, rates, res["timing"], synthetic_note)
    return 0


def summarise(config, title, elapsed, out, figure, table, merged, rates, timing, synthetic_note) -> None:
    """Print the accuracy tables, the distances and the timing."""
    import pandas as pd

    pd.set_option("display.width", 200)
    print(f"\nKernel few-shot: {title}")
    print(f"done in {elapsed:.1f} s -> {out}/accuracy.csv, episodes.csv, distances.csv; figure {figure}")
    for (kernel, labels, shots), g in table.groupby(["kernel", "labels", "shots"], sort=True):
        eps, q, tr = int(g["episodes"].iloc[0]), int(g["n_query"].iloc[0]), int(g["train_episodes"].iloc[0])
        print(f"\n{kernel.upper()} kernel, {labels} labels, {config.n_way}-way {shots}-shot accuracy %: mean +- 95% "
              f"t-CI over {eps} test episodes x {q} queries/class ({shots} shots; {tr} training episodes)")
        wide = g.assign(cell=[f"{m:5.1f} +- {h:4.1f}" for m, h in zip(g["acc_mean"], g["acc_ci95"])]).pivot(
            index="method", columns="depth", values="cell")
        wide.columns = [f"L={d}" if d else "trained" for d in wide.columns]
        print(wide.to_string())
    print("\nMTL vs GBML distance d_rel = ||F_a - F_b|| / ||F_b|| over all test queries' class scores (FC); "
          + synthetic_note)
    show = merged.pivot_table(index=["labels", "pair", "shots"], columns="depth", values="d_rel")
    show.columns = [f"L={d}" for d in show.columns]
    print(show.to_string(float_format=lambda v: f"{v:.3f}"))
    if merged["d_rel_synthetic"].notna().any():
        syn = merged.drop_duplicates(["pair", "depth"]).pivot_table(index="pair", columns="depth",
                                                                     values="d_rel_synthetic")
        syn.columns = [f"L={d}" for d in syn.columns]
        print("synthetic (mean over draws):")
        print(syn.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nfitted rate (slope of log d_rel vs log depth):")
    for r in rates.itertuples():
        syn = f"; synthetic {r.rate_synthetic:+.3f}" if r.rate_synthetic == r.rate_synthetic else ""
        real = (f"{r.rate_real:+.3f}" if r.rate_real == r.rate_real
                else "none (fewer than two depths with d_rel > 1e-12: the two predictors decide alike)")
        print(f"  {r.labels:12s} {r.pair:14s} {r.shots}-shot: real {real} (d_rel {r.d_rel_lo:.3g} at "
              f"L={r.depth_lo} -> {r.d_rel_hi:.3g} at L={r.depth_hi}){syn}")
    for r in timing.itertuples():
        print(f"timing: {r.kernel} {r.shots}-shot: {r.points} points, {r.depths} depths, {r.label_spaces} label spaces, "
              f"{r.groups} group(s) of {r.group_rows} test rows, {r.seconds:.1f} s; kernel {r.kernel_seconds:.1f} s for "
              f"{r.kernel_entries_computed} entries computed ({r.kernel_entries_per_s:.3g} entries/s, all depths), "
              f"{r.cache_hits} cache hit(s)")
