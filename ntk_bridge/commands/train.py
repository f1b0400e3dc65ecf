"""Train a few-shot learner (MTL, or a GBML baseline) on a benchmark and evaluate it.

The settings start from a packaged config per paper setting (``<dataset>_<shots>shot``, e.g.
``cifarfs_5shot``; or --config FILE) and flags override single fields. The run folder gets
config.json, checkpoints (orbax, atomic; rerunning the same command resumes a killed run
exactly where its last checkpoint left it, and says from which step), metrics.csv/json (one row
per validation), timing.csv, curve.png and summary.json (test accuracy with its protocol, wall
time, compile time, images per second, accelerator-hours). Everything is checked before the
folder is made (sizes, a memory estimate, split sizes for n_way), so a failed start leaves none.

Checkpoints: every checkpoint_every steps and at least every checkpoint_minutes (default 5) of wall
time (--set checkpoint_minutes=10), each sealed with a sha256 list of its files. Ctrl-C (exit 130)
or SIGTERM (exit 143) saves a checkpoint at the end of the running step and stops; a second Ctrl-C
stops at once. A non-finite lr or option is refused at the start; a non-finite loss or gradient stops
the run at once with one line naming the step (exit 2), the last good checkpoint kept. A full disk is
one line (a fresh run leaves no folder); a damaged latest checkpoint is named, with the previous
intact one to resume from.

Algorithm options are typed (unknown keys are refused, listing the valid ones), saved in
config.json and checked on resume: --set inner_lr=0.4 or --set 'algorithm_options={...}'.
MAML/ANIL defaults: Omniglot inner lr 0.4 with 1 inner step in training (Finn et al. 2017's
5-way Omniglot setting) and 1 at test time, as trained (3 steps of 0.4 overshoot on the trained
Conv-4's features: ntk_bridge.train.options); the 32x32 and 84x84 sets inner lr 0.01 with 5 steps
(10 at test time), Finn et al.'s mini-ImageNet setting.

Examples:
  ntk-bridge train --dataset omniglot --shots 5 --steps 600 --run-dir runs/omni5
  ntk-bridge train --dataset cifarfs --shots 5 --algorithm mtl --root ~/data/cifarfs
  ntk-bridge train --config my.json --set meta_batch=2 --set lr=0.0005
  ntk-bridge train --dataset omniglot --shots 1 --algorithm maml --set inner_lr=0.4 --set inner_steps=1

Several GPUs: each step's meta_batch tasks are split over all local devices (data parallel,
parameters replicated; --devices N for fewer; meta_batch must be a multiple of the device count).
Several hosts: start the same command on every host with --distributed and JAX_COORDINATOR_ADDRESS
(host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID set (or under SLURM / Open MPI,
which JAX detects); the steps then use every device of every host (ntk_bridge.train.parallel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _options_help() -> str:
    from ntk_bridge.train.options import describe_defaults
    return "; ".join(describe_defaults(a) for a in ("maml", "anil", "metaoptnet-ridge"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="omniglot, cifarfs, fc100, miniimagenet, tieredimagenet, or imagefolder: "
                                          "your own --root DIR/<class>/*.png (ntk_bridge.data.image_folder)")
    parser.add_argument("--shots", type=int, help="support examples per class (1 or 5 for the paper settings)")
    parser.add_argument("--config", help="a config JSON file or a packaged setting name "
                        "(default: <dataset>_<shots>shot)")
    parser.add_argument("--algorithm", help="mtl (default: the paper's MTL, docs/mtl_faithful.md), mtl-pooled (ours before "
                        "issue 31) or a GBML baseline: maml, anil, protonet, "
                        "metaoptnet-ridge")
    parser.add_argument("--root", help="data folder (default: the data layer's default for the set)")
    parser.add_argument("--run-dir", help="run folder (default: runs/<setting>_<algorithm>_seed<seed>; the same "
                        "settings resume it, other settings are refused)")
    parser.add_argument("--steps", type=int, help="training steps (max_steps)")
    parser.add_argument("--time-budget", type=float, help="stop after this many seconds of training steps "
                        "(time_budget_s; 0 = none)")
    parser.add_argument("--backbone", help="conv4 or resnet12")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--meta-batch", type=int, help="tasks per step")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--devices", type=int, help="devices each step's meta_batch is split over, data "
                        "parallel (default 0 = all local devices, or all devices of a --distributed run)")
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-host run first (jax.distributed.initialize: JAX_COORDINATOR_ADDRESS, "
                             "JAX_NUM_PROCESSES, JAX_PROCESS_ID, or SLURM / Open MPI auto-detection)")
    parser.add_argument("--distributed-timeout", type=float, default=None, metavar="S",
                        help="seconds --distributed waits for every process to join before it stops with one "
                             "line (default 300); a progress line says whom it waits for, Ctrl-C / SIGTERM stop it")
    parser.add_argument("--rotations", action="store_true",
                        help="Omniglot: add the 90/180/270-degree rotations of every character as "
                             "new classes (dataset_options rotations=true, the usual protocol)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override any config field or option of the chosen algorithm, the value "
                             "parsed as JSON (e.g. --set channels=32 --set normalize_features=false "
                             "--set inner_lr=0.4 or --set 'algorithm_options={\"inner_steps\": 1}'); "
                             "repeatable. Algorithm options and their defaults: " + _options_help().replace("%", "%%"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_set(items: list[str]) -> list[tuple[str, object]]:
    """``--set FIELD=JSON`` items as (field, value) pairs (a bare word is a string)."""
    from ntk_bridge.commands._options import split_assignment

    return [split_assignment(item, "FIELD=VALUE (VALUE in JSON, e.g. lr=0.001)") for item in items]


def apply_sets(base: dict, pairs: list[tuple[str, object]]) -> dict:
    """Put each (key, value) into the config dict ``base``: a config field as is, an option of
    the config's algorithm into ``algorithm_options``; anything else is refused in one line
    naming the valid keys."""
    from dataclasses import fields

    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.config import TrainConfig
    from ntk_bridge.train.options import option_names

    known = {f.name for f in fields(TrainConfig)}
    out = dict(base)
    given: dict = {}
    for key, value in pairs:
        algo = str(out.get("algorithm", "mtl"))
        if key == "algorithm_options":
            if not isinstance(value, dict):
                raise BridgeError(f"--set algorithm_options must be a JSON object, got {value!r}; "
                                  f"e.g. 'algorithm_options={{\"inner_lr\": 0.4}}'")
            given.update(value)
        elif key in known:
            out[key] = value
        elif key in option_names(algo):
            given[key] = value
        else:
            valid = ", ".join(option_names(algo)) or "none"
            raise BridgeError(f"--set {key}: not a config field nor a {algo} option ({algo} options: "
                              f"{valid}; config fields: {', '.join(sorted(known))})")
    if given:
        saved = out.get("algorithm_options") or {}
        out["algorithm_options"] = {**(saved if isinstance(saved, dict) else {}), **given}
    return out


def build_config(args):
    """The TrainConfig from --config / --dataset --shots, then flag and --set overrides."""
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.config import from_dict, load_config, setting_name

    if args.shots is not None and args.shots < 1:
        raise BridgeError(f"--shots must be >= 1 (support examples per class), got {args.shots}")
    if args.config:
        base = load_config(args.config).to_dict()
    elif args.dataset and args.shots:
        from ntk_bridge.data.base import check_dataset
        base = load_config(setting_name(check_dataset(args.dataset), args.shots)).to_dict()
    else:
        raise BridgeError("say what to train: --dataset NAME --shots K (a packaged setting) or "
                          "--config FILE")
    flags = {"dataset": args.dataset, "shots": args.shots, "algorithm": args.algorithm,
             "root": args.root, "max_steps": args.steps, "backbone": args.backbone, "lr": args.lr,
             "meta_batch": args.meta_batch, "seed": args.seed, "time_budget_s": args.time_budget,
             "devices": getattr(args, "devices", None)}
    if args.algorithm and args.algorithm != base.get("algorithm"):
        base["algorithm_options"] = {}  # the packaged config's options belong to its own algorithm
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.dataset:
        from ntk_bridge.data.base import check_dataset
        base["dataset"] = check_dataset(args.dataset)
    if args.rotations:
        if base.get("dataset") != "omniglot":
            raise BridgeError(f"--rotations is an Omniglot option; the dataset is {base.get('dataset')!r}")
        base["dataset_options"] = {**base.get("dataset_options", {}), "rotations": True}
    base = apply_sets(base, _parse_set(args.set))
    if args.no_progress:
        base["progress"] = False
    return from_dict(base)


def plot_curve(run_dir: Path, history: list, config) -> None:
    """run_dir/curve.png: the training loss of every step (steps.csv, train/steplog.py) and the
    validation accuracy (+- 95% CI) of every validation (metrics.json)."""
    from ntk_bridge.io import save_figure
    from ntk_bridge.train import steplog

    steps = steplog.read(run_dir)
    if not history and not len(steps):
        return
    fig = steplog.plot_curve(steps, history, f"{config.dataset} {config.n_way}-way {config.shots}-shot, "
                                                      f"{config.algorithm}, {config.backbone}")
    save_figure(run_dir / "curve.png", fig)


def best_line(summary: dict, config, history: list) -> str:
    """The best validation accuracy with its protocol (from the metrics row of that step)."""
    row = next((h for h in history if h["step"] == summary["best_step"]), None)
    if row is None:
        return "no validation yet"
    return (f"{row['val_acc']:.2f} +- {row['val_ci95']:.2f} % at step {row['step']} ({config.n_way}-way "
            f"{row['shots']}-shot, {row['val_episodes']} episodes, {row['val_query']} queries/class, "
            f"head {row['val_head']}, 95% CI = t(0.975, episodes-1)*std/sqrt(episodes))")


def wall_line(summary: dict) -> str:
    """This command's wall time from its start to the summary, with its parts (seconds).

    ``summary`` holds the library's session parts (``ntk_bridge.train.loop``: startup_s, loop_s,
    steps_s, compile_s_session, test_s) and the command's own ``command_s`` (start to end) and
    ``distributed_s`` (joining a multi-host run). The remainder is writing files and the curve."""
    total = summary["command_s"]
    loop, steps, compiling = summary["loop_s"], summary["steps_s"], summary["compile_s_session"]
    parts = [f"start-up {summary['startup_s']:.1f} s (checks, data, model)"]
    if summary.get("distributed_s"):
        parts.insert(0, f"joining the distributed run {summary['distributed_s']:.1f} s")
    parts.append(f"training loop {loop:.1f} s ({steps:.1f} s in steps, {compiling:.1f} s compiling, "
                 f"{max(loop - steps - compiling, 0.0):.1f} s validating and checkpointing)")
    test = summary.get("test")
    parts.append(f"test {summary.get('test_s', 0.0):.1f} s" + (f" ({test['episodes']} episodes per head)" if test else ""))
    rest = total - sum(summary.get(k) or 0.0 for k in ("distributed_s", "startup_s", "loop_s", "test_s"))
    parts.append(f"writing and the curve {max(rest, 0.0):.1f} s")
    line = f"{total:.1f} s from start to end: " + ", ".join(parts)
    if summary.get("resumed_from"):
        line += f"; the training loop over every session of this run: {summary['wall_s']:.1f} s"
    return line


def print_summary(summary: dict, config, history: list) -> None:
    rows = [("setting", f"{config.dataset} {config.n_way}-way {config.shots}-shot, {config.algorithm}, "
                        f"{config.backbone}"),
            ("steps", f"{summary['steps']} ({summary['stop_reason']}"
                      + (f"; resumed from step {summary['resumed_from']})" if summary.get("resumed_from") else ")")),
            ("best validation", best_line(summary, config, history)),
            ("test", summary.get("test_text", "not evaluated")),
            ("wall time", wall_line(summary)),
            ("throughput", f"{summary['images_per_s']:.1f} images/s on {summary['device_kind']}"),
            ("accelerator-hours", f"{summary['accelerator_hours']:.4f}"),
            ("run folder", summary["run_dir"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def run(args) -> int:
    import time

    from ntk_bridge.train.loop import train

    started = time.perf_counter()               # the summary's wall time counts from here
    config = build_config(args)
    if args.distributed_timeout is not None and not args.distributed:
        from ntk_bridge.errors import BridgeError
        raise BridgeError("--distributed-timeout applies to --distributed only; add --distributed or drop it")
    if args.distributed:  # before anything asks JAX for its devices
        from ntk_bridge.train.parallel import DISTRIBUTED_TIMEOUT_S, initialize_distributed
        timeout = DISTRIBUTED_TIMEOUT_S if args.distributed_timeout is None else args.distributed_timeout
        initialize_distributed(distributed_timeout=timeout)
    joined = time.perf_counter() - started if args.distributed else 0.0
    run_dir = Path(args.run_dir or f"runs/{config.dataset}_{config.shots}shot_{config.algorithm}_seed{config.seed}")
    summary = train(config, run_dir)
    metrics = run_dir / "metrics.json"
    history = json.loads(metrics.read_text()) if metrics.exists() else []
    plot_curve(run_dir, history, config)
    summary = {**summary, "distributed_s": joined, "command_s": time.perf_counter() - started}
    print_summary(summary, config, history)
    return 0
