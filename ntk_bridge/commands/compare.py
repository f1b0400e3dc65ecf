"""Train several few-shot algorithms on one data set and compare accuracy and training cost.

For every shot setting (--shots 1,5) and every algorithm (--algorithms mtl,maml,anil,protonet,
metaoptnet-ridge) the command trains the same backbone from the same seed, with the same number
of images per optimiser step (meta_batch tasks x n_way x (shots + train_query) images), until a
wall-time budget (--time-budget seconds of training) or --max-steps is reached. Every
--eval-every steps it evaluates on one fixed set of validation episodes, twice:

  own     the algorithm's own test-time adaptation (MTL: logistic regression on frozen features;
          MAML/ANIL: inner-loop steps; ProtoNet: prototypes; MetaOptNet-ridge: ridge head);
  logreg  the shared head: L2-normalised frozen features, multinomial logistic regression
          (scikit-learn's C=3 objective), so that body quality is compared independently of
          the head.

Training wall time excludes evaluation and compilation (each train step is compiled ahead of
time, and the compile time is reported separately); CPU time of the process is recorded too,
because on a shared machine CPU time is the steadier cost measure. The time to reach a target
validation accuracy (own head; --target VALUE in [0, 1], or "auto" = the lowest best validation
accuracy over the algorithms of that shot setting, so every method reaches it) is the training
wall time at the first evaluation at or above the target. The best-validation state of each run
is evaluated on --test-episodes test episodes. Accuracies are mean +- 95% CI
(t(0.975, episodes-1)*std/sqrt(episodes)), n_way-way, with --val-query / --test-query queries per class.

Outputs under --out: summary.csv and summary.md (one row per algorithm and shot setting),
curves.csv (every evaluation), ratios.json (time-to-target and per-step time of each method
relative to MTL, e.g. MAML/MTL), config.json (all settings, per-algorithm hyper-parameters);
and the figure --figure (validation accuracy against training wall time, one panel per shot
setting).

Example (the CPU Omniglot comparison):
  ntk-bridge compare --dataset omniglot --algorithms mtl,maml,anil,protonet,metaoptnet-ridge \\
      --shots 1,5 --channels 32 --time-budget 90
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

ALL_ALGORITHMS = ("mtl", "maml", "anil", "protonet", "metaoptnet-ridge")

# Per-algorithm settings (override any of them with --config FILE: {"maml": {"inner_steps": 1}}).
# MAML/ANIL follow Finn et al.'s Omniglot settings (inner lr 0.1 with 5 steps in training, more
# steps at test time); the ridge head starts at lambda 1, logit scale 10 (both learned).
# MTL trains on unnormalised features, as the packaged Omniglot configs do: L2-normalised features
# without a temperature keep the logits within the head-row norms and the loss near log(n_way)
# (experiments/results/compare_omniglot/mtl_fixed/diagnosis.md); normalise with a `logit_scale`.
DEFAULT_ALGO_CONFIGS: dict[str, dict[str, Any]] = {
    "mtl": {"lr": 1e-3, "normalize_features": False},
    "maml": {"lr": 1e-3, "inner_steps": 5, "inner_lr": 0.1, "eval_inner_steps": 10,
             "first_order": False, "remat": False},
    "anil": {"lr": 1e-3, "inner_steps": 5, "inner_lr": 0.1, "eval_inner_steps": 10,
             "first_order": False, "remat": False},
    "protonet": {"lr": 1e-3},
    "metaoptnet-ridge": {"lr": 1e-3, "ridge_lambda": 1.0, "ridge_scale": 10.0},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="omniglot", help="data set name (default omniglot)")
    parser.add_argument("--root", default="", help="data folder (default: the data layer's default)")
    parser.add_argument("--algorithms", default=",".join(ALL_ALGORITHMS),
                        help=f"comma-separated list from {','.join(ALL_ALGORITHMS)}")
    parser.add_argument("--shots", default="1,5", help="comma-separated shot settings (default 1,5)")
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--backbone", default="conv4", help="conv4 or resnet12")
    parser.add_argument("--channels", type=int, default=None,
                        help="backbone width (Conv-4: one int; default the backbone's)")
    parser.add_argument("--meta-batch", type=int, default=4, help="tasks / episodes per step")
    parser.add_argument("--train-query", type=int, default=5,
                        help="queries per class in a training episode (MTL: extra images per class)")
    parser.add_argument("--time-budget", type=float, default=90.0,
                        help="training wall-time budget per algorithm and shot setting, seconds")
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--eval-every", type=int, default=25, help="steps between validations")
    parser.add_argument("--val-episodes", type=int, default=100)
    parser.add_argument("--val-query", type=int, default=15)
    parser.add_argument("--test-episodes", type=int, default=600)
    parser.add_argument("--test-query", type=int, default=15)
    parser.add_argument("--target", default="auto",
                        help="target validation accuracy in [0, 1] for time-to-target, or 'auto'")
    parser.add_argument("--config", default="",
                        help="JSON file {algorithm: {field: value}} overriding per-algorithm settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/compare",
                        help="results folder (CSV, markdown, JSON)")
    parser.add_argument("--figure", default="", help="figure path (default OUT/compare.png)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# --------------------------------------------------------------------------- argument checks

def _parse_list(text: str, what: str, cast=str) -> list:
    from ntk_bridge.errors import BridgeError
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise BridgeError(f"--{what} is empty; give a comma-separated list")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise BridgeError(f"--{what} must be a comma-separated list of {cast.__name__}s, got {text!r}")


def parse_target(text: str) -> float | None:
    """'auto' -> None; otherwise a float in (0, 1]."""
    from ntk_bridge.errors import BridgeError
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BridgeError(f"--target must be 'auto' or a number in (0, 1], got {text!r}")
    if not 0.0 < value <= 1.0:
        raise BridgeError(f"--target is an accuracy fraction in (0, 1], got {value}; e.g. 0.9 for 90%")
    return value


def time_to_target(curve: list[dict], target: float, key: str = "val_own") -> tuple[float, int]:
    """Training wall time and step of the first evaluation with ``curve[i][key] >= target``;
    (nan, -1) when never reached. ``curve`` rows hold ``train_time_s``, ``step`` and ``key``."""
    for row in curve:
        if row[key] >= target:
            return float(row["train_time_s"]), int(row["step"])
    return float("nan"), -1


def auto_target(best_by_algo: dict[str, float]) -> float:
    """The lowest best validation accuracy over the algorithms, floored to 0.005."""
    return math.floor(min(best_by_algo.values()) * 200.0) / 200.0


# --------------------------------------------------------------------------- training one run

class _Run:
    """One algorithm, one shot setting: init, ahead-of-time compiled step, eval, test."""

    def __init__(self, name, algo_cfg, args, shots, splits, stats, model, key):
        import jax
        import jax.numpy as jnp
        import numpy as np

        from ntk_bridge.train.algorithms import get_algorithm
        from ntk_bridge.train.config import TrainConfig
        from ntk_bridge.train.gbml import GBML_ALGORITHMS, GBMLConfig, make_gbml

        self.name, self.args, self.shots = name, args, shots
        self.train, self.val, self.test = splits
        self.mean = np.asarray(stats[0], np.float32)
        self.std = np.asarray(stats[1], np.float32)
        run_fields = {k: v for k, v in algo_cfg.items()
                      if k in TrainConfig.__dataclass_fields__}
        self.run_config = TrainConfig(
            dataset=args.dataset, algorithm=name if name == "mtl" else "mtl",
            backbone=args.backbone, n_way=args.n_way, shots=shots, train_query=args.train_query,
            meta_batch=args.meta_batch, optimizer="radam", schedule="constant", seed=args.seed,
            augment=False, progress=False, **run_fields)
        if name in GBML_ALGORITHMS:
            gcfg = {"n_way": args.n_way, "meta_batch": args.meta_batch, **algo_cfg}
            self.algo = make_gbml(name, GBMLConfig.from_mapping(gcfg))
        else:
            self.algo = get_algorithm(name)
        self.episodic = bool(self.algo.episodic)
        self.step_rng = np.random.default_rng([args.seed, shots, 1])
        self._queue: list = []
        batch = self.next_batch()
        self.images_per_step = int(sum(v.shape[0] * v.shape[1] for k, v in batch.items()
                                       if k in ("x", "support_x", "query_x")))
        self.state = self.algo.init(key, model, batch, self.run_config, self.train.num_classes)
        t0 = time.perf_counter()
        self.step_fn = jax.jit(self.algo.train_step).lower(
            self.state, batch, jax.random.PRNGKey(0)).compile()
        self.compile_s = time.perf_counter() - t0
        self.key = jax.random.fold_in(key, 7)
        self._pending = batch
        self._feats = jax.jit(lambda s, x: _feature_fn(s, x))
        self._own = jax.jit(lambda s, sx, sy, qx: self.algo.predict_episodes(s, sx, sy, qx, args.n_way))
        self._jnp = jnp

    # batches ------------------------------------------------------------------------------
    def _norm(self, images):
        import numpy as np
        return ((images.astype(np.float32) / 255.0) - self.mean) / self.std

    def next_batch(self) -> dict:
        """The next training batch (sampled in blocks of 64 steps; a pure function of seed)."""
        import numpy as np

        from ntk_bridge.data.sampler import sample_episodes, sample_task_batch
        a, t = self.args, self.args.meta_batch
        if not self._queue:
            n = 64 * t
            if self.episodic:
                ep = sample_episodes(self.train.labels, a.n_way, self.shots, a.train_query, n,
                                     self.step_rng)
                self._queue = [ep._replace(**{f: getattr(ep, f)[i:i + t] for f in ep._fields})
                               for i in range(0, n, t)]
            else:
                tb = sample_task_batch(self.train.labels, a.n_way, self.shots + a.train_query, n,
                                       self.step_rng)
                self._queue = [tb._replace(**{f: getattr(tb, f)[i:i + t] for f in tb._fields})
                               for i in range(0, n, t)]
        b = self._queue.pop(0)
        imgs = self.train.images
        if self.episodic:
            return {"support_x": self._norm(imgs[b.support_idx]),
                    "support_y": b.support_labels.astype(np.int32),
                    "query_x": self._norm(imgs[b.query_idx]),
                    "query_y": b.query_labels.astype(np.int32),
                    "classes": b.classes.astype(np.int32)}
        return {"x": self._norm(imgs[b.idx]), "y": b.labels.astype(np.int32),
                "classes": b.classes.astype(np.int32)}

    def train_step(self, step: int) -> dict:
        import jax
        batch = self._pending if self._pending is not None else self.next_batch()
        self._pending = None
        self.state, metrics = self.step_fn(self.state, batch, jax.random.fold_in(self.key, step))
        return metrics

    # evaluation ---------------------------------------------------------------------------
    def evaluate(self, split, episodes) -> dict:
        """Accuracy (fractions per episode) with the own head and the shared logreg head."""
        import numpy as np

        from ntk_bridge.train.heads import l2_normalize, logreg_logits
        jnp, a = self._jnp, self.args
        out = {"own": [], "logreg": []}
        chunk = 25
        for s in range(0, episodes.support_idx.shape[0], chunk):
            sl = slice(s, s + chunk)
            si, qi = episodes.support_idx[sl], episodes.query_idx[sl]
            sy, qy = episodes.support_labels[sl].astype(np.int32), episodes.query_labels[sl]
            sx, qx = self._norm(split.images[si]), self._norm(split.images[qi])
            logits = self._own(self.state, sx, sy, qx)
            out["own"].append(np.asarray(jnp.argmax(logits, -1) == qy).mean(-1))
            e, ns, nq = si.shape[0], si.shape[1], qi.shape[1]
            f = self._feats(self.state, np.concatenate([sx.reshape((e * ns,) + sx.shape[2:]),
                                                        qx.reshape((e * nq,) + qx.shape[2:])]))
            fs = l2_normalize(f[: e * ns].reshape(e, ns, -1))
            fq = l2_normalize(f[e * ns:].reshape(e, nq, -1))
            lr = logreg_logits(fs, jnp.asarray(sy), fq, a.n_way, 3.0, 15)
            out["logreg"].append(np.asarray(jnp.argmax(lr, -1) == qy).mean(-1))
        res = {k: np.concatenate(v) for k, v in out.items()}
        for k, v in res.items():
            if not np.all(np.isfinite(v)):
                from ntk_bridge.errors import BridgeError
                raise BridgeError(f"{self.name}: non-finite {k} accuracy; training diverged "
                                  "(lower the learning rate or inner_lr)")
        return res


def _feature_fn(state, x):
    from ntk_bridge.train.algorithms import features
    return features(state, x)


# --------------------------------------------------------------------------- the command

def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from ntk_bridge import io
    from ntk_bridge.data import dataset_stats, load_split
    from ntk_bridge.data.sampler import sample_episodes
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.evaluation import CI_METHOD, mean_ci
    from ntk_bridge.train.models import build_backbone

    algorithms = _parse_list(args.algorithms, "algorithms")
    unknown = [a for a in algorithms if a not in ALL_ALGORITHMS]
    if unknown:
        raise BridgeError(f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(ALL_ALGORITHMS)}")
    shots_list = _parse_list(args.shots, "shots", int)
    if any(s < 1 for s in shots_list):
        raise BridgeError(f"--shots must be positive integers, got {args.shots!r}")
    target_arg = parse_target(args.target)
    for name in ("time_budget", "eval_every", "val_episodes", "test_episodes", "meta_batch",
                 "val_query", "test_query", "max_steps"):
        if not getattr(args, name) > 0:
            raise BridgeError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    algo_cfgs = {a: dict(DEFAULT_ALGO_CONFIGS[a]) for a in algorithms}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise BridgeError(f"--config file {path} not found; give a JSON file {{algorithm: {{field: value}}}}")
        try:
            override = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BridgeError(f"--config {path} is not valid JSON ({err.msg} at line {err.lineno})")
        for a, fields in override.items():
            if a not in algo_cfgs or not isinstance(fields, dict):
                raise BridgeError(f"--config: key {a!r} must be one of the chosen algorithms "
                                  f"({', '.join(algorithms)}) mapping to an object")
            algo_cfgs[a].update(fields)

    root = args.root
    if not root:
        from ntk_bridge.data import default_data_root
        root = default_data_root() / args.dataset
    splits = tuple(load_split(args.dataset, root, s) for s in ("train", "val", "test"))
    stats = dataset_stats(args.dataset)
    model = build_backbone(args.backbone, channels=args.channels,
                           drop_rate=0.0 if args.backbone == "resnet12" else 0.1)
    out = Path(args.out)
    figure = Path(args.figure) if args.figure else out / "compare.png"
    config_record = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                     "algorithm_configs": algo_cfgs, "dataset_root": str(root),
                     "splits": {s.name: [int(s.images.shape[0]), int(s.num_classes)] for s in splits},
                     "jax": jax.__version__, "device": str(jax.devices()[0]),
                     "measurement": ("training wall time excludes evaluation and compilation; "
                                     "accuracies are mean +- " + CI_METHOD)}
    io.write_json(out / "config.json", config_record)

    summary_rows, curve_rows = [], []
    for shots in shots_list:
        a = args
        val_eps = sample_episodes(splits[1].labels, a.n_way, shots, a.val_query, a.val_episodes,
                                  np.random.default_rng([a.seed, shots, 2]))
        test_eps = sample_episodes(splits[2].labels, a.n_way, shots, a.test_query, a.test_episodes,
                                   np.random.default_rng([a.seed, shots, 3]))
        curves: dict[str, list[dict]] = {}
        results: dict[str, dict] = {}
        for name in algorithms:
            key = jax.random.PRNGKey(a.seed)
            r = _Run(name, algo_cfgs[name], a, shots, splits, stats, model, key)
            curve, best, best_state = [], -1.0, r.state
            train_time = cpu_time = 0.0
            bar = tqdm(total=int(a.time_budget), desc=f"{name} {shots}-shot", unit="s",
                       disable=a.no_progress, leave=False)
            step = 0
            while step < a.max_steps:
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(a.eval_every):
                    metrics = r.train_step(step)
                    step += 1
                    if step >= a.max_steps:
                        break
                loss = float(jax.block_until_ready(metrics["loss"]))
                dw, dc = time.perf_counter() - w0, time.process_time() - c0
                train_time += dw
                cpu_time += dc
                if not math.isfinite(loss):
                    raise BridgeError(f"{name} {shots}-shot: loss is {loss} at step {step}; "
                                      "lower the learning rate (or inner_lr for MAML/ANIL)")
                v = r.evaluate(splits[1], val_eps)
                own, own_ci = mean_ci(v["own"])
                lr_acc, lr_ci = mean_ci(v["logreg"])
                row = {"algorithm": name, "shots": shots, "step": step,
                       "train_time_s": train_time, "cpu_time_s": cpu_time, "train_loss": loss,
                       "val_own": own / 100.0, "val_own_ci": own_ci / 100.0,
                       "val_logreg": lr_acc / 100.0, "val_logreg_ci": lr_ci / 100.0}
                curve.append(row)
                if own / 100.0 > best:
                    best, best_state = own / 100.0, r.state
                bar.update(min(int(train_time), int(a.time_budget)) - bar.n)
                bar.set_postfix(step=step, val=f"{own:.1f}%")
                if train_time >= a.time_budget:
                    break
            bar.close()
            r.state = best_state
            t = r.evaluate(splits[2], test_eps)
            results[name] = {
                "algorithm": name, "shots": shots, "steps": step,
                "train_time_s": train_time, "cpu_time_s": cpu_time, "compile_s": r.compile_s,
                "step_ms": 1000.0 * train_time / step,
                "images_per_s": r.images_per_step * step / train_time,
                "images_per_step": r.images_per_step, "best_val_own": best,
                "test_own": mean_ci(t["own"]), "test_logreg": mean_ci(t["logreg"]),
            }
            curves[name] = curve
            curve_rows.extend(curve)
            print(f"{name:>16} {shots}-shot: {step} steps, {train_time:.1f} s train, "
                  f"best val {100 * best:.2f}%, test own {results[name]['test_own'][0]:.2f} +- "
                  f"{results[name]['test_own'][1]:.2f} %, logreg {results[name]['test_logreg'][0]:.2f} "
                  f"+- {results[name]['test_logreg'][1]:.2f} % ({a.test_episodes} episodes, "
                  f"{a.test_query} queries/class)", flush=True)
            io.write_csv(out / "curves.csv", pd.DataFrame(curve_rows))
        target = target_arg if target_arg is not None else auto_target(
            {n: res["best_val_own"] for n, res in results.items()})
        for name, res in results.items():
            tt, ts = time_to_target(curves[name], target)
            tt_cpu = next((row["cpu_time_s"] for row in curves[name] if row["step"] == ts), float("nan"))
            summary_rows.append({**{k: v for k, v in res.items() if not k.startswith("test_")},
                                 "test_own": res["test_own"][0], "test_own_ci": res["test_own"][1],
                                 "test_logreg": res["test_logreg"][0],
                                 "test_logreg_ci": res["test_logreg"][1],
                                 "target_val": target, "time_to_target_s": tt,
                                 "cpu_to_target_s": tt_cpu, "steps_to_target": ts})
        io.write_csv(out / "summary.csv", pd.DataFrame(summary_rows))

    summary = pd.DataFrame(summary_rows)
    ratios = _ratios(summary)
    io.write_json(out / "ratios.json", ratios)
    md = _markdown(summary, args, ratios)
    io.write_text(out / "summary.md", md)
    _figure(pd.DataFrame(curve_rows), summary, figure)
    print(md)
    print(f"wrote {out}/summary.csv, summary.md, curves.csv, ratios.json, config.json and {figure}")
    return 0


def _ratios(summary) -> dict:
    """Each method's time-to-target, CPU-to-target and per-step time divided by MTL's."""
    out: dict = {}
    for shots, grp in summary.groupby("shots"):
        rows = {r["algorithm"]: r for _, r in grp.iterrows()}
        if "mtl" not in rows:
            continue
        base = rows["mtl"]
        per = {}
        for name, r in rows.items():
            if name == "mtl":
                continue
            def ratio(a, b):
                return float(a / b) if (b and math.isfinite(a) and math.isfinite(b) and b > 0) else None
            per[f"{name}/mtl"] = {
                "time_to_target": ratio(r["time_to_target_s"], base["time_to_target_s"]),
                "cpu_to_target": ratio(r["cpu_to_target_s"], base["cpu_to_target_s"]),
                "step_time": ratio(r["step_ms"], base["step_ms"]),
                "target_val": float(r["target_val"]),
                "note": ("time_to_target is None when either method did not reach the target or "
                         "reached it at the first evaluation of a zero-length run"),
            }
        out[f"{int(shots)}-shot"] = per
    return out


def _fmt_time(x) -> str:
    return "not reached" if not math.isfinite(x) else f"{x:.1f}"


def _markdown(summary, args, ratios) -> str:
    lines = [f"Few-shot comparison on {args.dataset}, {args.backbone}"
             f"{'' if args.channels is None else f' ({args.channels} channels)'}, {args.n_way}-way; "
             f"test: {args.test_episodes} episodes x {args.test_query} queries/class, "
             f"mean +- 95% CI (t(0.975, episodes-1)*std/sqrt(episodes)); validation: {args.val_episodes} fixed "
             f"episodes x {args.val_query} queries/class every {args.eval_every} steps; "
             "train time excludes evaluation and compilation.", "",
             "| method | shots | steps | train s | CPU s | compile s | ms/step | img/s | test own % "
             "| test logreg % | best val % | target val % | time to target s | CPU to target s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['algorithm']} | {int(r['shots'])} | {int(r['steps'])} | {r['train_time_s']:.1f} | "
            f"{r['cpu_time_s']:.1f} | {r['compile_s']:.1f} | {r['step_ms']:.1f} | "
            f"{r['images_per_s']:.0f} | {r['test_own']:.2f} +- {r['test_own_ci']:.2f} | "
            f"{r['test_logreg']:.2f} +- {r['test_logreg_ci']:.2f} | {100 * r['best_val_own']:.2f} | "
            f"{100 * r['target_val']:.1f} | {_fmt_time(r['time_to_target_s'])} | "
            f"{_fmt_time(r['cpu_to_target_s'])} |")
    lines.append("")
    for shots, per in ratios.items():
        for pair, v in per.items():
            def f(x):
                return "n/a" if x is None else f"{x:.2f}"
            lines.append(f"- {shots}: {pair} time-to-target ratio {f(v['time_to_target'])} "
                         f"(CPU {f(v['cpu_to_target'])}), per-step time ratio {f(v['step_time'])}, "
                         f"target {100 * v['target_val']:.1f}% val (own head)")
    return "\n".join(lines) + "\n"


def _figure(curves, summary, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntk_bridge import io
    shots_list = sorted(curves["shots"].unique())
    fig, axes = plt.subplots(1, len(shots_list), figsize=(5.5 * len(shots_list), 4), squeeze=False)
    for ax, shots in zip(axes[0], shots_list):
        sub = curves[curves["shots"] == shots]
        for name, grp in sub.groupby("algorithm", sort=False):
            ax.plot(grp["train_time_s"], 100 * grp["val_own"], marker=".", label=name)
        tgt = summary[summary["shots"] == shots]["target_val"]
        if len(tgt):
            ax.axhline(100 * float(tgt.iloc[0]), color="grey", ls="--", lw=1, label="target")
        ax.set_xlabel("training wall time (s, excl. evaluation)")
        ax.set_ylabel("validation accuracy, own head (%)")
        ax.set_title(f"{shots}-shot")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)
