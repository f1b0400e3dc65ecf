"""GPU path for the paper's own benchmarks (issue 31): the faithful MTL and MetaOptNet-ridge on
ResNet-12, trained for a fixed budget with the paper's epoch rules; prints accuracy and time per epoch.

Both methods start from one packaged faithful config (default ``cifarfs_5shot``: ResNet-12
64-160-320-640, dropout 0.1 in blocks 1-2, DropBlock 0.1 ramped, RAdam lr 1e-3, 6 tasks per step
x 10 images per class, one epoch = 1600 tasks, validation every epoch on fresh random episodes,
docs/mtl_faithful.md). MetaOptNet-ridge trains on episodes of the same size (``shots`` support +
``10 - shots`` queries per class, the same tasks per step), so both see the same images per step.
Each run stops after ``--epochs`` epochs or at the first validation after ``--budget`` seconds of
training steps, whichever comes first; the best-validation state is tested on ``--test-episodes``.

Data: ``--root`` (the data set's folder; on a lent device it must travel with the working tree)
or, without it, synthetic uint8 images of the data set's size (64 base classes x 600; the
timings hold, the accuracies mean nothing).

  PYTHONPATH=. python3 experiments/gpu_mtl_faithful.py --setting cifarfs_5shot --epochs 3 --budget 240
  CPU dry run (seconds):  PYTHONPATH=. python experiments/gpu_mtl_faithful.py --quick
Writes $OUT/gpu_mtl_faithful.json (or --out FILE) with one row per epoch and the test results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALGORITHMS = ("mtl", "metaoptnet-ridge")


def synthetic_data(size: int, n_train: int, per_class: int):
    """Class templates + per-image noise, uint8 (N, size, size, 3): train / val / test splits."""
    from ntk_bridge.data import FewShotSplit
    from ntk_bridge.train.loop import RunData

    def split(n_classes, seed, name):
        rng = np.random.default_rng(seed)
        templates = rng.integers(0, 256, (n_classes, size, size, 3), dtype=np.uint8)
        labels = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
        noise = rng.integers(-60, 61, (labels.size, size, size, 3), dtype=np.int16)
        images = np.clip(templates[labels].astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return FewShotSplit(images, labels, tuple(f"c{i}" for i in range(n_classes)), name)

    n_eval = max(5, n_train // 4)
    return RunData(split(n_train, 0, "synthetic/train"), split(n_eval, 1, "synthetic/val"),
                   split(n_eval, 2, "synthetic/test"), (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


def run_config(setting: str, algorithm: str, args):
    """The faithful packaged config, shortened to ``args``; MetaOptNet-ridge on equal-size episodes."""
    from ntk_bridge.train.config import load_config
    base = load_config(setting)
    per_class = base.n_per_class
    epoch_steps = max(1, round(args.epoch_tasks / base.meta_batch))
    changes = dict(algorithm=algorithm, max_steps=args.epochs * epoch_steps, eval_every=epoch_steps,
                   checkpoint_every=epoch_steps, time_budget_s=float(args.budget), progress=False,
                   test_episodes=args.test_episodes, val_episodes=args.val_episodes,
                   train_query=per_class - base.shots,
                   algorithm_options=base.algorithm_options if algorithm == "mtl" else {})
    if algorithm != "mtl":
        changes.update(test_head="own", val_heads=["own", "logreg"])
    if args.quick:
        changes.update(channels=[8, 8, 8, 8], val_query=5, test_query=5, dataset_options={})
    return base.replace(**changes)


def epochs_of(run_dir: Path) -> list[dict]:
    """One row per validation (= epoch): seconds of training steps in it, train and val accuracy."""
    history = json.loads((run_dir / "metrics.json").read_text())
    import pandas as pd
    timing = pd.read_csv(run_dir / "timing.csv").to_dict("records")
    rows, before = [], 0.0
    for i, (h, t) in enumerate(zip(history, timing)):
        rows.append({"epoch": i + 1, "step": h["step"], "epoch_train_s": t["train_s"] - before,
                     "train_acc": h["train_acc"], "val_acc": h["val_acc"], "val_ci95": h["val_ci95"]})
        before = t["train_s"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", default="cifarfs_5shot", help="a packaged faithful config")
    p.add_argument("--root", default="", help="data folder (default: synthetic images of the set's size)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--budget", type=float, default=240.0, help="seconds of training steps per method")
    p.add_argument("--epoch-tasks", type=int, default=1600, help="tasks per epoch (the paper: 1600)")
    p.add_argument("--val-episodes", type=int, default=400)
    p.add_argument("--test-episodes", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="tiny CPU dry run: 2 epochs of 12 tasks, 8-channel ResNet-12")
    p.add_argument("--out", default="", help="JSON result file (default $OUT/gpu_mtl_faithful.json if OUT is set)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.epoch_tasks, args.val_episodes, args.test_episodes = 2, 12, 4, 4

    import jax

    from ntk_bridge.train.loop import load_data, train
    first = run_config(args.setting, ALGORITHMS[0], args)
    size = 84 if first.dataset in ("miniimagenet", "tieredimagenet") else 32
    if args.quick:
        size = 16
    data = (load_data(first.replace(root=args.root)) if args.root
            else synthetic_data(size, 8 if args.quick else 64, 30 if args.quick else 600))
    report = {"setting": args.setting, "device": str(jax.devices()[0]), "jax": jax.__version__,
              "data": args.root or f"synthetic {size}x{size}x3", "load_avg": os.getloadavg(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ALGORITHMS:
            config = run_config(args.setting, algorithm, args)
            t0 = time.perf_counter()
            summary = train(config, Path(tmp) / algorithm, data=data)
            rows = epochs_of(Path(tmp) / algorithm)
            report["runs"][algorithm] = {"epochs": rows, "test": summary["test"], "compile_s": summary["compile_s"],
                                         "wall_s": time.perf_counter() - t0, "stop_reason": summary["stop_reason"],
                                         "meta_batch": config.meta_batch, "images_per_class": config.n_per_class}
            for r in rows:
                print(f"{algorithm:>16} epoch {r['epoch']}: {r['epoch_train_s']:.1f} s training, train acc "
                      f"{r['train_acc']:.1f}%, val {r['val_acc']:.2f} +- {r['val_ci95']:.2f}%")
            print(f"{algorithm:>16} test {summary['test']['mean']:.2f} +- {summary['test']['ci95']:.2f}% "
                  f"({config.test_episodes} episodes), compile {summary['compile_s']:.1f} s, {summary['stop_reason']}")
    out = args.out or (os.path.join(os.environ["OUT"], "gpu_mtl_faithful.json") if os.environ.get("OUT") else "")
    if out:
        Path(out).write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
