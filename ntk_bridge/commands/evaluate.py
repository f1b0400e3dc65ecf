"""Evaluate a run folder (finished or interrupted) on test episodes.

Loads the run's config.json and its best-validation weights (or, with --checkpoint latest or
when no validation has happened yet, the latest checkpoint), samples the test episodes (a pure
function of the run's seed) and prints the accuracy as mean +- 95% CI
(t(0.975, episodes-1)*std/sqrt(episodes)) with its episode, query and shot counts. Writes
eval_<split>_<head>_<shots>shot_<episodes>ep_<checkpoint>.json (with _<n>way before _<shots>shot
when --n-way differs from the run's) and the per-episode accuracies beside it as
..._episodes.csv, in the run folder.

--n-way evaluates with more (or fewer) classes per episode than the run trained with, e.g.
20-way one-shot on Omniglot; it needs a frozen-feature head (logreg, proto, ridge; for MTL also
its own), since MAML/ANIL/ProtoNet/ridge own heads are built for the training n_way.

Example:
  ntk-bridge evaluate runs/omniglot_5shot_mtl_seed0 --episodes 2000 --head proto
  ntk-bridge evaluate runs/omniglot_1shot_mtl_seed0 --n-way 20 --shots 1 --head logreg
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a folder written by `ntk-bridge train`")
    parser.add_argument("--episodes", type=int, help="test episodes (default: the run's test_episodes)")
    parser.add_argument("--queries", type=int, help="queries per class (default: the run's test_query)")
    parser.add_argument("--shots", type=int, help="support examples per class (default: the run's shots)")
    parser.add_argument("--n-way", type=int, help="classes per episode (default: the run's n_way)")
    parser.add_argument("--head", choices=("logreg", "proto", "ridge", "own"),
                        help="test-time head (default: the run's test_head)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                        help="which weights (default best validation)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--root", help="data folder, if it moved since training")


def run(args) -> int:
    import pandas as pd

    from ntk_bridge.errors import BridgeError
    from ntk_bridge.io import write_csv, write_json
    from ntk_bridge.train.loop import (
        evaluate_state,
        init_state,
        load_data,
        load_run_config,
        restore_for_eval,
        trained_anything,
    )

    run_dir = Path(args.run_dir)
    config = load_run_config(run_dir)
    if args.root:
        config = config.replace(root=args.root)
    for name in ("episodes", "queries", "shots"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BridgeError(f"--{name} must be >= 1, got {value}")
    if args.n_way is not None and args.n_way < 2:
        raise BridgeError(f"--n-way must be >= 2, got {args.n_way}")
    head = args.head or config.test_head
    n_way = args.n_way or config.n_way
    if n_way != config.n_way and head == "own" and config.algorithm not in ("mtl", "mtl-pooled"):
        raise BridgeError(f"the own head of {config.algorithm} is built for {config.n_way}-way episodes; "
                          f"evaluate {n_way}-way with --head logreg, proto or ridge")
    if not trained_anything(run_dir):
        raise BridgeError(f"run folder {run_dir} has no checkpoint (its training never reached one, "
                          f"e.g. a failed start); train it first (ntk-bridge train ... --run-dir {run_dir})")
    data = load_data(config, splits=("train", args.split))
    split = getattr(data, args.split)
    n_classes = len(set(split.labels.tolist()))
    if n_classes < n_way:
        raise BridgeError(f"the {args.split} split ({split.name}) has {n_classes} classes, fewer than "
                          f"--n-way {n_way}; lower --n-way")
    algorithm, _, state, _ = init_state(config, data)
    state = restore_for_eval(run_dir, state, args.checkpoint)
    res, accs = evaluate_state(config, algorithm, state, data, args.split, episodes=args.episodes,
                               query=args.queries, shots=args.shots, head=head, n_way=n_way)
    way = f"_{n_way}way" if n_way != config.n_way else ""
    stem = f"eval_{args.split}_{head}{way}_{res.shots}shot_{res.episodes}ep_{args.checkpoint}"
    write_json(run_dir / f"{stem}.json", {**res.to_dict(), "checkpoint": args.checkpoint,
                                          "text": res.describe()})
    write_csv(run_dir / f"{stem}_episodes.csv", pd.DataFrame({"episode": range(accs.size), "accuracy": accs}))
    print(f"{config.dataset} {config.algorithm} ({args.checkpoint} checkpoint): {res.describe()}")
    print(f"wrote {run_dir / (stem + '.json')}")
    return 0
