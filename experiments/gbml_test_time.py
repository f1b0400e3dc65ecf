"""Test-time adaptation of trained MAML / ANIL runs: inner steps and step size chosen on validation.

A trained MAML or ANIL run adapts at test time with its own inner loop (``eval_inner_steps``
steps of ``inner_lr``). This script keeps the trained weights (the run's best-validation
checkpoint) and scores a grid of test-time settings on the run's fixed validation episodes,
picks the best on validation only, and reports the test accuracy of every setting beside it, so
the effect of the choice is visible and the selected row is an honest number.

Writes OUT (CSV: run, setting, split, mean, ci95, episodes, selected) and prints a table.

Example (the committed table):
    python experiments/gbml_test_time.py experiments/results/compare_omniglot/converged/runs/{anil,maml}_{1,5}shot \\
        --out experiments/results/compare_omniglot/converged/test_time_adaptation.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GRID = ((1, 0.4), (3, 0.4), (10, 0.4), (1, 0.1), (3, 0.1), (10, 0.1), (10, 0.03), (30, 0.03), (30, 0.01))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders of MAML / ANIL (with their best/ checkpoint)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--val-episodes", type=int, default=0, help="validation episodes (default: the run's)")
    p.add_argument("--test-episodes", type=int, default=0, help="test episodes (default: the run's)")
    return p.parse_args(argv)


def check(args) -> list[Path]:
    """Every run folder holds config.json (MAML or ANIL) and a best/ checkpoint; OUT is writable."""
    runs = [Path(r) for r in args.runs]
    for r in runs:
        cfg = r / "config.json"
        if not cfg.is_file() or not (r / "best").is_dir():
            sys.exit(f"error: {r} is not a finished run folder with a best/ checkpoint")
        if json.loads(cfg.read_text())["algorithm"] not in ("maml", "anil"):
            sys.exit(f"error: {r} is not a MAML or ANIL run")
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".csv":
        sys.exit(f"error: --out {out} must be a .csv file path")
    return runs


def score(run: Path, steps: int, lr: float, val_episodes: int, test_episodes: int) -> list[dict]:
    """Val and test accuracy of the run's best checkpoint adapted with ``steps`` steps of ``lr``."""
    from ntk_bridge.train.config import from_dict
    from ntk_bridge.train.loop import evaluate_state, restore_for_eval, start_run

    saved = json.loads((run / "config.json").read_text())
    trained = dict(saved["algorithm_options"])
    saved["algorithm_options"] = {**trained, "eval_inner_steps": steps, "inner_lr": lr}
    config = from_dict(saved)
    data, algorithm, state, _ = start_run(config, None, quiet=True)
    state = restore_for_eval(run, state, "best")
    rows = []
    for split, episodes in (("val", val_episodes or config.val_episodes), ("test", test_episodes or config.test_episodes)):
        res = evaluate_state(config, algorithm, state, data, split, episodes=episodes, head="own")[0]
        rows.append({"run": run.name, "algorithm": config.algorithm, "shots": config.shots,
                     "eval_inner_steps": steps, "eval_inner_lr": lr,
                     "as_trained": steps == trained["eval_inner_steps"] and lr == trained["inner_lr"],
                     "split": split, "mean": res.mean, "ci95": res.ci95, "episodes": episodes})
    return rows


def main(argv=None) -> int:
    import pandas as pd

    args = parse_args(argv)
    runs = check(args)
    rows = []
    for run in runs:
        for steps, lr in GRID:
            rows += score(run, steps, lr, args.val_episodes, args.test_episodes)
            print(f"{run.name}: {steps} steps x {lr}: " + ", ".join(
                f"{r['split']} {r['mean']:.2f} +- {r['ci95']:.2f}" for r in rows[-2:]), flush=True)
    frame = pd.DataFrame(rows)
    val = frame[frame["split"] == "val"]
    best = val.loc[val.groupby("run")["mean"].idxmax(), ["run", "eval_inner_steps", "eval_inner_lr"]]
    key = ["run", "eval_inner_steps", "eval_inner_lr"]
    frame = frame.merge(best.assign(selected=True), on=key, how="left")
    frame["selected"] = frame["selected"].fillna(False).astype(bool)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    sel = frame[frame["selected"] & (frame["split"] == "test")]
    print("\nselected on validation (test accuracy, own head, mean +- 95% t-interval over episodes):")
    for r in sel.itertuples():
        print(f"  {r.run}: {r.eval_inner_steps} steps x {r.eval_inner_lr} -> test {r.mean:.2f} +- {r.ci95:.2f} %")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
