"""Train several few-shot algorithms on one data set and compare accuracy and training cost.

For every shot setting (--shots 1,5) and every algorithm (--algorithms mtl,maml,anil,protonet,
metaoptnet-ridge) the command trains the same backbone from the same seed with the training loop
of `ntk-bridge train` (one run folder per algorithm and shot setting under OUT/runs/, whose
config.json `ntk-bridge train --config OUT/runs/<algorithm>_<k>shot/config.json` reruns to the
same metrics), with the same number of images per optimiser step (meta_batch tasks x n_way x
(shots + train_query) images), until a wall-time budget (--time-budget seconds of training
steps, checked at each validation) or --max-steps is reached. Rerunning the command resumes
unfinished runs and reuses finished ones. Every --eval-every steps each run is evaluated on one
fixed set of validation episodes with two heads:

  own     the algorithm's own test-time adaptation (MTL: logistic regression on frozen features;
          MAML/ANIL: inner-loop steps; ProtoNet: prototypes; MetaOptNet-ridge: ridge head);
          it selects the best checkpoint;
  logreg  the shared head: L2-normalised frozen features, multinomial logistic regression
          (scikit-learn's C=3 objective), so that body quality is compared independently of
          the head.

Training wall time excludes evaluation and compilation (the step is compiled ahead of time on
the first step; the compile time is reported separately); CPU time of the process is recorded
too, because on a shared machine CPU time is the steadier cost measure. The time to reach a
target validation accuracy (own head; --target VALUE in [0, 1]; "auto" = the lowest best
validation accuracy over the algorithms of that shot setting, so every method reaches it; or
"gbml-1" = the best validation accuracy of the GBML methods run (MAML, ANIL, MetaOptNet-ridge)
minus one point, the paper's "matches GBML" question) is the training wall time at the first
evaluation at or above the target. The best-validation state of
each run is evaluated on --test-episodes test episodes. Accuracies are mean +- 95% CI
(t(0.975, episodes-1)*std/sqrt(episodes)), n_way-way, with --val-query / --test-query queries per class.

Per-algorithm settings: the typed options of ntk_bridge.train.options (MAML/ANIL inner_lr,
inner_steps, eval_inner_steps, first_order, remat; MetaOptNet-ridge init_lambda, init_scale) with
their per-data-set defaults, and any run-config field (lr, normalize_features, ...). Set them with
--set ALGO.KEY=VALUE (or KEY=VALUE for every chosen algorithm that has KEY), --inner-lr /
--inner-steps (MAML and ANIL), or --config FILE-or-JSON {algorithm: {key: value}}; an unknown key
is refused in one line listing the valid ones.

Outputs under --out, staged and moved into place together once every run is done (an
interrupted comparison leaves the previous result files; rerun it to resume): summary.csv and summary.md (one row per
algorithm and shot setting), curves.csv (every evaluation), ratios.json (time-to-target and
per-step time of each method relative to MTL, e.g. MAML/MTL), config.json (all settings, the
run config of every algorithm); the figure --figure (validation accuracy against training wall
time, one panel per shot setting); and the run folders OUT/runs/.

--from-runs trains nothing: it re-makes the result files from the finished run folders in
OUT/runs/ (each must hold summary.json and the run config this command would build), e.g. after
the runs of one comparison were made in several parts.

Example (the CPU Omniglot comparison):
  ntk-bridge compare --dataset omniglot --algorithms mtl,maml,anil,protonet,metaoptnet-ridge \\
      --shots 1,5 --channels 32 --time-budget 90
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ntk_bridge.commands._fields import Flag, add_flags
from ntk_bridge.studies.compare import (
    ALL_ALGORITHMS,
    DEFAULT_ALGO_FIELDS,
    GBML_ALGORITHMS,
    SHARED_FIELDS,
    TARGET_MODES,
    Protocol,
    check_finished_run,
    run_one,
    summary_rows,
)

PROTOCOL_FLAGS = (
    Flag("dataset", "data set name"),
    Flag("root", "data folder", shown=lambda v: v or "the data layer's default"),
    Flag("algorithms", f"comma-separated list from {','.join(ALL_ALGORITHMS)}"),
    Flag("shots", "comma-separated shot settings"),
    Flag("n_way", "classes per episode"),
    Flag("backbone", "conv4 or resnet12"),
    Flag("channels", "backbone width (Conv-4: one int)", parse=int, shown=lambda v: "the backbone's"),
    Flag("meta_batch", "tasks / episodes per step"),
    Flag("train_query", "queries per class in a training episode (MTL: extra images per class)"),
    Flag("time_budget", "training wall-time budget per algorithm and shot setting, seconds"),
    Flag("max_steps", "steps at most per run"),
    Flag("eval_every", "steps between validations"),
    Flag("val_episodes", "fixed validation episodes"),
    Flag("val_query", "validation queries per class"),
    Flag("test_episodes", "test episodes of the best-validation state"),
    Flag("test_query", "test queries per class"),
    Flag("target", "target validation accuracy in (0, 1] for time-to-target, 'auto' (the lowest best "
                   "validation accuracy) or 'gbml-1' (the best GBML method's minus one point)"),
    Flag("seed", "seed of every run"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ntk_bridge.train.options import describe_defaults
    add_flags(parser, Protocol(), PROTOCOL_FLAGS)
    parser.add_argument("--rotations", action="store_true",
                        help="Omniglot: rotated copies (90/180/270 degrees) as extra classes")
    parser.add_argument("--inner-lr", type=float, help="MAML/ANIL inner learning rate (default per "
                        "data set: " + "; ".join(describe_defaults(a) for a in ("maml",)) + ")")
    parser.add_argument("--inner-steps", type=int, help="MAML/ANIL inner steps in training")
    parser.add_argument("--set", action="append", default=[], metavar="[ALGO.]KEY=JSON",
                        help="a per-algorithm setting, e.g. --set maml.first_order=true or "
                             "--set lr=0.003 (every chosen algorithm); repeatable")
    parser.add_argument("--config", default="",
                        help="JSON file, or inline JSON, {algorithm: {key: value}} of per-algorithm "
                             "settings (typed options or run-config fields)")
    parser.add_argument("--out", default="experiments/results/compare",
                        help="results folder: CSV, markdown, JSON and the resumable run folders under "
                             "OUT/runs/ (default experiments/results/compare; a run folder made with other "
                             "settings is refused, and the folder is locked while a comparison writes it)")
    parser.add_argument("--figure", default="", help="figure path (default OUT/compare.png)")
    parser.add_argument("--time-axis", choices=("wall", "cpu"), default="wall",
                        help="the figure's x axis: training wall time or process CPU time (steadier on "
                             "a shared machine); default wall")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--from-runs", action="store_true",
                        help="train nothing: summarise the finished run folders in OUT/runs/")


# --------------------------------------------------------------------------- argument checks

def _parse_list(text: str, what: str, cast=str) -> list:
    from ntk_bridge.errors import BridgeError
    items = [t.strip() for t in str(text).split(",")]
    if not any(items) or not all(items):
        raise BridgeError(f"--{what} must be a comma-separated list without empty items, got {text!r}")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise BridgeError(f"--{what} must be a comma-separated list of {cast.__name__}s, got {text!r}") from None


def parse_target(text: str) -> float | str | None:
    """'auto' -> None; 'gbml-1' -> 'gbml-1'; otherwise a float in (0, 1]."""
    from ntk_bridge.errors import BridgeError
    mode = str(text).strip().lower()
    if mode == "auto":
        return None
    if mode in TARGET_MODES:
        return mode
    try:
        value = float(text)
    except ValueError:
        raise BridgeError(f"--target must be 'auto', 'gbml-1' or a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise BridgeError(f"--target is an accuracy fraction in (0, 1], got {value}; e.g. 0.9 for 90%")
    return value


def _read_overrides(text: str) -> dict:
    """--config: a JSON file or inline JSON object {algorithm: {key: value}}."""
    from ntk_bridge.errors import BridgeError
    if not text:
        return {}
    inline = text.lstrip().startswith("{")
    path = Path(text)
    if not inline and not path.is_file():
        raise BridgeError(f"--config {text!r} is neither a JSON file nor inline JSON; give "
                          "{algorithm: {key: value}}")
    try:
        value = json.loads(text if inline else path.read_text())
    except json.JSONDecodeError as err:
        raise BridgeError(f"--config {'(inline)' if inline else path} is not valid JSON "
                          f"({err.msg} at line {err.lineno})") from None
    except (UnicodeDecodeError, OSError) as err:
        raise BridgeError(f"--config {path} cannot be read as a text file ({type(err).__name__}); "
                          "give a JSON file") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise BridgeError("--config must be a JSON object {algorithm: {key: value}}")
    return value


def _set_pairs(args, algorithms: list[str]) -> list[tuple[str, str, Any]]:
    """(algorithm or None = every one that has the key, key, value) from --inner-lr /
    --inner-steps and --set [ALGO.]KEY=JSON."""
    from ntk_bridge.commands._options import split_assignment
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.options import option_names
    out = []
    for flag, key in (("inner_lr", "inner_lr"), ("inner_steps", "inner_steps")):
        value = getattr(args, flag, None)
        if value is not None:
            targets = [a for a in algorithms if key in option_names(a)]
            if not targets:
                raise BridgeError(f"--{flag.replace('_', '-')} applies to maml and anil, none of "
                                  f"which is in --algorithms {','.join(algorithms)}")
            out += [(a, key, value) for a in targets]
    for item in getattr(args, "set", []) or []:
        lhs, value = split_assignment(item, "[ALGO.]KEY=VALUE, e.g. maml.inner_lr=0.4")
        algo, _, key = lhs.rpartition(".")
        if algo and algo not in algorithms:
            raise BridgeError(f"--set {item!r}: {algo!r} is not one of --algorithms {','.join(algorithms)}")
        out.append((algo or None, key, value))
    return out


def algorithm_settings(args, algorithms: list[str]) -> dict[str, dict]:
    """Per algorithm: {"fields": run-config overrides, "options": typed-option values given};
    unknown keys refused in one line naming the valid ones."""
    from dataclasses import fields

    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.config import TrainConfig
    from ntk_bridge.train.options import option_names

    run_fields = {f.name for f in fields(TrainConfig)} - set(SHARED_FIELDS)
    out = {a: {"fields": dict(DEFAULT_ALGO_FIELDS[a]), "options": {}} for a in algorithms}
    overrides = _read_overrides(args.config)
    for a in overrides:
        if a not in out:
            raise BridgeError(f"--config: key {a!r} must be one of the chosen algorithms "
                              f"({', '.join(algorithms)})")
    pairs = [(a, k, v) for a, kv in overrides.items() for k, v in kv.items()] + _set_pairs(args, algorithms)
    expanded = []
    for a, key, value in pairs:
        if a is None:  # KEY=VALUE: every chosen algorithm that has KEY
            has = [b for b in algorithms if key in option_names(b) or key in run_fields]
            expanded += [(b, key, value) for b in (has or algorithms)]
        else:
            expanded.append((a, key, value))
    for a, key, value in expanded:
        if key in option_names(a):
            out[a]["options"][key] = value
        elif key in run_fields:
            out[a]["fields"][key] = value
        else:
            opts = ", ".join(option_names(a)) or "none"
            raise BridgeError(f"unknown {a} setting {key!r}; valid keys: {a} options ({opts}) or a "
                              f"run-config field ({', '.join(sorted(run_fields))})")
    return out


def run_config(args, algorithm: str, shots: int, settings: dict):
    """The TrainConfig of one algorithm and shot setting (shared flags + its own settings)."""
    from ntk_bridge.train.config import from_dict
    shared = {
        "dataset": args.dataset, "root": str(args.root or ""),
        "dataset_options": {"rotations": True} if args.rotations else {},
        "algorithm": algorithm, "algorithm_options": settings["options"], "backbone": args.backbone,
        "channels": args.channels, "n_way": args.n_way, "shots": shots,
        "max_steps": args.max_steps, "time_budget_s": float(args.time_budget),
        "eval_every": args.eval_every, "val_episodes": args.val_episodes, "val_query": args.val_query,
        "test_episodes": args.test_episodes, "test_query": args.test_query, "test_head": "own",
        "val_heads": ["own", "logreg"], "seed": args.seed, "progress": not args.no_progress,
    }
    base = {"train_query": args.train_query, "meta_batch": args.meta_batch, "optimizer": "radam",
            "schedule": "constant", "early_stop_patience": 0, "checkpoint_every": args.eval_every,
            "augment": False, "drop_rate": 0.0 if args.backbone == "resnet12" else 0.1}
    return from_dict({**base, **settings["fields"], **shared})


def _check_args(args) -> tuple[list[str], list[int], float | None]:
    from ntk_bridge.errors import BridgeError
    algorithms = _parse_list(args.algorithms, "algorithms")
    unknown = [a for a in algorithms if a not in ALL_ALGORITHMS]
    if unknown:
        raise BridgeError(f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(ALL_ALGORITHMS)}")
    shots_list = _parse_list(args.shots, "shots", int)
    if any(s < 1 for s in shots_list):
        raise BridgeError(f"--shots must be positive integers, got {args.shots!r}")
    target = parse_target(args.target)
    if target == "gbml-1" and not set(algorithms) & set(GBML_ALGORITHMS):
        raise BridgeError(f"--target gbml-1 needs a GBML method ({', '.join(GBML_ALGORITHMS)}) in --algorithms")
    for name in ("time_budget", "eval_every", "val_episodes", "test_episodes", "meta_batch",
                 "val_query", "test_query", "max_steps"):
        if not getattr(args, name) > 0:
            raise BridgeError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.channels is not None and args.channels < 1:
        raise BridgeError(f"--channels must be >= 1, got {args.channels}")
    if args.rotations and args.dataset != "omniglot":
        raise BridgeError(f"--rotations is an Omniglot option; the dataset is {args.dataset!r}")
    return algorithms, shots_list, target


# --------------------------------------------------------------------------- the command

def plan(args):
    """Every check before any work: (configs {(algorithm, shots): TrainConfig}, target, out,
    figure, data). Loads the data once; writes nothing."""
    from ntk_bridge.train.cost import check_memory
    from ntk_bridge.train.loop import check_splits, load_data
    from ntk_bridge.train.paths import check_figure_path, check_output_dir

    algorithms, shots_list, target = _check_args(args)
    settings = algorithm_settings(args, algorithms)
    configs = {(a, k): run_config(args, a, k, settings[a]) for k in shots_list for a in algorithms}
    for config in configs.values():
        check_memory(config)
    out = check_output_dir(args.out, "--out")
    figure = check_figure_path(Path(args.figure) if args.figure else out / "compare.png")
    data = load_data(next(iter(configs.values())))
    for config in configs.values():
        check_splits(config, data)
    if args.from_runs:
        for (name, k), config in configs.items():
            check_finished_run(config, out / "runs" / f"{name}_{k}shot")
    return configs, target, out, figure, data


def run(args: argparse.Namespace) -> int:
    from ntk_bridge.io import result_folder, staged_files
    from ntk_bridge.report.schemas import COMPARE

    configs, target_arg, out, figure, data = plan(args)
    try:
        inside = figure.resolve().relative_to(out.resolve())
    except ValueError:
        inside = None
    # the result files are staged and moved into place together at the end (ntk_bridge.io); the
    # run folders live in OUT/runs/ from the start (each is resumable) and are carried over
    with staged_files([] if inside else [figure], "--figure") as temps, \
            result_folder(out, "--out", replaces=COMPARE.files()) as tmp:
        rows, curve_rows = [], []
        for shots in dict.fromkeys(k for _, k in configs):
            results, curves = {}, {}
            for (name, k), config in configs.items():
                if k == shots:
                    results[name], curves[name] = run_one(config, out / "runs" / f"{name}_{shots}shot", data,
                                                          train_it=not args.from_runs)
                    curve_rows.extend(curves[name])
            rows.extend(summary_rows(results, curves, target_arg))
        md = _write_results(tmp, tmp / inside if inside else temps[0], rows, curve_rows, configs, data, args)
    print(md)
    print(f"wrote {out}/summary.csv, summary.md, curves.csv, ratios.json, config.json, runs/ and {figure}")
    return 0


def protocol_of(args: argparse.Namespace) -> Protocol:
    """The study's protocol from the parsed flags."""
    from dataclasses import fields

    return Protocol(**{f.name: getattr(args, f.name) for f in fields(Protocol)})


def _write_results(tmp: Path, figure: Path, rows, curve_rows, configs, data, args) -> str:
    """Every result file of the comparison into the staging folder ``tmp``; returns summary.md."""
    import jax
    import pandas as pd

    from ntk_bridge import io
    from ntk_bridge.report.schemas import COMPARE, write_table
    from ntk_bridge.studies import compare
    from ntk_bridge.train.evaluation import CI_METHOD
    protocol = protocol_of(args)
    summary = pd.DataFrame(rows)
    ratios = compare.ratios(summary)
    md = compare.markdown(summary, protocol, ratios)
    record = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
              "run_configs": {f"{a}_{k}shot": c.to_dict() for (a, k), c in configs.items()},
              "splits": {s.name: [int(s.images.shape[0]), int(s.num_classes)]
                         for s in (data.train, data.val, data.test)},
              "jax": jax.__version__, "device": str(jax.devices()[0]),
              "measurement": ("training wall time excludes evaluation and compilation; "
                              "accuracies are mean +- " + CI_METHOD)}
    io.save_figure(figure, compare.figure(pd.DataFrame(curve_rows), summary, protocol))
    write_table(tmp, COMPARE.parts["curves"], pd.DataFrame(curve_rows))
    write_table(tmp, COMPARE.parts["summary"], summary)
    io.write_json(tmp / COMPARE.file("ratios"), ratios)
    io.write_text(tmp / COMPARE.file("markdown"), md)
    io.write_json(tmp / COMPARE.file("config"), record)
    return md
