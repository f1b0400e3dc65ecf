"""The test-time choice of trained few-shot runs, made on validation: heads and MAML/ANIL inner loops.

Every method adapts to a new task at test time in its own way (MTL: logistic regression on frozen
features; MAML/ANIL: ``eval_inner_steps`` steps of ``inner_lr``; ProtoNet: prototypes;
MetaOptNet-ridge: its ridge head), and a frozen-feature head (logreg, proto, ridge) can be put on
any trained body. This script keeps the trained weights (each run's best-validation checkpoint),
scores every test-time setting on the run's fixed validation episodes, picks the best on
validation only, and reports the test accuracy of every setting beside it: the selected row is an
honest number, the others show what the choice is worth.

Settings: the frozen-feature heads logreg (C from the run config), proto and ridge for every run;
the run's own head as trained; for MAML/ANIL, the own head at each (steps, step size) of GRID
(and, for ANIL, whose inner loop adapts the head only, LONG_GRID).

Writes OUT (CSV: run, algorithm, shots, head, eval_inner_steps, eval_inner_lr, as_trained, split,
mean, ci95, episodes, selected) and prints the selected settings.

Example (the committed table):
    python experiments/test_time_choice.py experiments/results/compare_omniglot/converged/runs/*/ \\
        --out experiments/results/compare_omniglot/converged/test_time_choice.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEADS = ("logreg", "proto", "ridge")      # frozen-feature heads, on every run
GRID = ((1, 0.4), (3, 0.4), (10, 0.4), (1, 0.1), (3, 0.1), (10, 0.1), (10, 0.03))
LONG_GRID = ((30, 0.03), (30, 0.01))   # ANIL only: a MAML step adapts the whole network (30 steps x 1,000
                                       # episodes took about 5 min per setting on 2 cores for 1-shot)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders of `ntk-bridge train` (with their best/ checkpoint)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--val-episodes", type=int, default=0, help="validation episodes (default: the run's)")
    p.add_argument("--test-episodes", type=int, default=0, help="test episodes (default: the run's)")
    return p.parse_args(argv)


def check(args) -> list[Path]:
    """Every run folder holds config.json and a best/ checkpoint; OUT is a .csv path."""
    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not (r / "config.json").is_file() or not (r / "best").is_dir():
            sys.exit(f"error: {r} is not a finished run folder with a best/ checkpoint")
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".csv":
        sys.exit(f"error: --out {out} must be a .csv file path")
    return runs


def settings(saved: dict) -> list[tuple[str, int | None, float | None]]:
    """(head, eval_inner_steps, inner_lr) to score for a run config; None where it does not apply."""
    out = [(h, None, None) for h in HEADS]
    if saved["algorithm"] in ("maml", "anil"):
        opts = saved["algorithm_options"]
        extra = LONG_GRID if saved["algorithm"] == "anil" else ()
        grid = dict.fromkeys(((opts["eval_inner_steps"], opts["inner_lr"]),) + GRID + extra)   # as trained first
        return out + [("own", steps, lr) for steps, lr in grid]
    return out + ([("own", None, None)] if saved["algorithm"] != "mtl" else [])      # MTL's own head is logreg


def score(run: Path, head: str, steps: int | None, lr: float | None, val_episodes: int,
          test_episodes: int) -> list[dict]:
    """Val and test accuracy of the run's best checkpoint with one test-time setting."""
    from ntk_bridge.train.config import from_dict
    from ntk_bridge.train.loop import evaluate_state, restore_for_eval, start_run

    saved = json.loads((run / "config.json").read_text())
    trained = dict(saved["algorithm_options"])
    if steps is not None:
        saved["algorithm_options"] = {**trained, "eval_inner_steps": steps, "inner_lr": lr}
    config = from_dict(saved)
    data, algorithm, state, _ = start_run(config, None, quiet=True)
    state = restore_for_eval(run, state, "best")
    as_trained = head == ("logreg" if config.algorithm == "mtl" else "own") and (
        steps is None or (steps == trained["eval_inner_steps"] and lr == trained["inner_lr"]))
    rows = []
    for split, episodes in (("val", val_episodes or config.val_episodes), ("test", test_episodes or config.test_episodes)):
        res = evaluate_state(config, algorithm, state, data, split, episodes=episodes, head=head)[0]
        rows.append({"run": run.name, "algorithm": config.algorithm, "shots": config.shots, "head": head,
                     "eval_inner_steps": steps, "eval_inner_lr": lr, "as_trained": as_trained,
                     "split": split, "mean": res.mean, "ci95": res.ci95, "episodes": episodes})
    return rows


def main(argv=None) -> int:
    import pandas as pd

    args = parse_args(argv)
    runs = check(args)
    rows = []
    for run in runs:
        for head, steps, lr in settings(json.loads((run / "config.json").read_text())):
            rows += [{**r, "setting": len(rows) // 2} for r in score(run, head, steps, lr, args.val_episodes,
                                                                     args.test_episodes)]
            what = head if steps is None else f"{head}, {steps} steps x {lr}"
            print(f"{run.name}: {what}: " + ", ".join(
                f"{r['split']} {r['mean']:.2f} +- {r['ci95']:.2f}" for r in rows[-2:]), flush=True)
    frame = pd.DataFrame(rows)                             # "setting": one id per (run, setting), val and test rows
    val = frame[frame["split"] == "val"]
    chosen = set(val.loc[val.groupby("run")["mean"].idxmax(), "setting"])
    frame["selected"] = frame["setting"].isin(chosen)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    sel = frame[frame["selected"] & (frame["split"] == "test")]
    print("\nselected on validation (test accuracy of the chosen setting, mean +- 95% t-interval over episodes):")
    for r in sel.itertuples():
        what = r.head if pd.isna(r.eval_inner_steps) else f"{r.head}, {int(r.eval_inner_steps)} steps x {r.eval_inner_lr}"
        print(f"  {r.run}: {what} -> test {r.mean:.2f} +- {r.ci95:.2f} %")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
