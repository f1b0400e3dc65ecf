"""The trainer comparison as a study: several few-shot algorithms trained on one data set with
the loop of ``ntk-bridge train``, accuracy and training cost side by side.

:class:`Protocol` is the comparison's shared protocol (its defaults, stated once; the command's
flags are derived from it). :func:`run_one` trains (or reads) one run folder and returns its
result row and validation curve; :func:`summary_rows` adds the time to a target validation
accuracy (:func:`resolve_target`: "auto" = the lowest best validation accuracy, "gbml-1" = the
best GBML method's minus one point, or a number); :func:`ratios` divides each method's costs by
MTL's; :func:`markdown` and :func:`figure` present them. Progress goes to the ``logging`` logger
``ntk_bridge.studies.compare``; nothing here prints or parses flags.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntk_bridge.io import read_json

log = logging.getLogger(__name__)


ALL_ALGORITHMS = ("mtl", "mtl-pooled", "maml", "anil", "protonet", "metaoptnet-ridge")


# Per-algorithm run-config settings on top of the shared ones (the typed algorithm options come
# from ntk_bridge.train.options with their per-data-set defaults). The paper's MTL (`mtl`) trains
# on L2-normalised features, its head bank scaled by sqrt(n_base / n_way) at init so that the
# logits are not stuck near zero (docs/mtl_faithful.md); ours (`mtl-pooled`, plain head init)
# trains on unnormalised features, as before issue 31: with normalised features its logits stay
# within the small head-row norms (experiments/results/compare_omniglot/mtl_fixed/diagnosis.md).
DEFAULT_ALGO_FIELDS: dict[str, dict[str, Any]] = {
    "mtl": {"lr": 1e-3},
    "mtl-pooled": {"lr": 1e-3, "normalize_features": False},
    "maml": {"lr": 1e-3}, "anil": {"lr": 1e-3}, "protonet": {"lr": 1e-3},
    "metaoptnet-ridge": {"lr": 1e-3},
}


# fields every run of one comparison shares (set by the command's own flags, not per algorithm)
SHARED_FIELDS = ("dataset", "root", "dataset_options", "algorithm", "algorithm_options", "backbone",
                 "channels", "n_way", "shots", "max_steps", "time_budget_s", "eval_every",
                 "val_episodes", "val_query", "test_episodes", "test_query", "test_head",
                 "val_heads", "seed", "progress")


@dataclass(frozen=True)
class Protocol:
    """The comparison's shared protocol: its defaults, stated once (the flags are derived from it)."""

    dataset: str = "omniglot"
    root: str = ""
    algorithms: str = ",".join(ALL_ALGORITHMS)
    shots: str = "1,5"
    n_way: int = 5
    backbone: str = "conv4"
    channels: int | None = None
    meta_batch: int = 4
    train_query: int = 5
    time_budget: float = 90.0
    max_steps: int = 100000
    eval_every: int = 25
    val_episodes: int = 100
    val_query: int = 15
    test_episodes: int = 600
    test_query: int = 15
    target: str = "auto"
    seed: int = 0
    rotations: bool = False        # Omniglot: rotated copies as extra classes
    time_axis: str = "wall"        # the figure's x axis: "wall" or "cpu" seconds of training


GBML_ALGORITHMS = ("maml", "anil", "metaoptnet-ridge")   # the paper's GBML class (ProtoNet is metric-based)


TARGET_MODES = ("auto", "gbml-1")


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


def gbml_target(best_by_algo: dict[str, float]) -> float:
    """The best validation accuracy of the GBML methods present (:data:`GBML_ALGORITHMS`) minus
    one point (0.01); nan when none of them was run."""
    gbml = [v for a, v in best_by_algo.items() if a in GBML_ALGORITHMS]
    return max(gbml) - 0.01 if gbml else float("nan")


def resolve_target(target_arg: float | str | None, best_by_algo: dict[str, float]) -> float:
    """The target accuracy of one shot setting from --target (see :func:`parse_target`)."""
    if target_arg is None:
        return auto_target(best_by_algo)
    if target_arg == "gbml-1":
        return gbml_target(best_by_algo)
    return float(target_arg)


def check_finished_run(config, run_dir: Path) -> None:
    """--from-runs: ``run_dir`` holds summary.json and a config.json equal to ``config`` (up to
    the fields a resume may change), else one line naming the folder and the fix."""
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.config import incompatible_fields
    if not (run_dir / "summary.json").is_file() or not (run_dir / "config.json").is_file():
        raise BridgeError(f"`from_runs`: {run_dir} is not a finished run (no summary.json or config.json); "
                          "drop `from_runs` to train it")
    differ = incompatible_fields(read_json(run_dir / "config.json", "drop `from_runs` to train it again"), config)
    if differ:
        raise BridgeError(f"`from_runs`: {run_dir} was trained with other settings ({', '.join(differ)}); "
                          "give the settings that made it or drop `from_runs`")


def run_one(config, run_dir: Path, data, train_it: bool = True) -> tuple[dict, list[dict]]:
    """Train (unless ``train_it`` is false: a finished run is read) one run with the shared
    loop; (result row, curve rows) from its files."""
    import pandas as pd

    from ntk_bridge.train.loop import train
    summary = (train(config, run_dir, data=data) if train_it
               else read_json(run_dir / "summary.json", "drop `from_runs` to train it again"))
    history = read_json(run_dir / "metrics.json", "drop `from_runs` to train it again")
    timing = pd.read_csv(run_dir / "timing.csv").to_dict("records")
    name, shots = config.algorithm, config.shots
    curve = [{"algorithm": name, "shots": shots, "step": h["step"], "train_time_s": t["train_s"],
              "cpu_time_s": t["cpu_s"], "train_loss": h["train_loss"],
              "val_own": h["val_own"] / 100.0, "val_own_ci": h["val_own_ci95"] / 100.0,
              "val_logreg": h["val_logreg"] / 100.0, "val_logreg_ci": h["val_logreg_ci95"] / 100.0}
             for h, t in zip(history, timing)]
    test = summary["test_heads"]
    per_step = config.meta_batch * config.n_way * config.n_per_class
    steps = summary["steps"]
    result = {"algorithm": name, "shots": shots, "steps": steps, "train_time_s": summary["train_s"],
              "cpu_time_s": summary["cpu_s"], "compile_s": summary["compile_s"],
              "step_ms": 1000.0 * summary["train_s"] / max(steps, 1),
              "images_per_s": summary["images_per_s"], "images_per_step": per_step,
              "best_val_own": summary["best_val_acc"] / 100.0,
              "test_own": (test["own"]["mean"], test["own"]["ci95"]),
              "test_logreg": (test["logreg"]["mean"], test["logreg"]["ci95"]),
              "stop_reason": summary["stop_reason"]}
    log.info(f"{name:>16} {shots}-shot: {steps} steps ({summary['stop_reason']}), "
             f"{summary['train_s']:.1f} s train, best val {summary['best_val_acc']:.2f}%, test own "
             f"{result['test_own'][0]:.2f} +- {result['test_own'][1]:.2f} %, logreg "
             f"{result['test_logreg'][0]:.2f} +- {result['test_logreg'][1]:.2f} % ({config.test_episodes} "
             f"episodes, {config.test_query} queries/class)")
    return result, curve


def summary_rows(results: dict, curves: dict, target_arg: float | str | None) -> list[dict]:
    """One row per algorithm of one shot setting, with the time (wall, CPU) to the target."""
    target = resolve_target(target_arg, {n: res["best_val_own"] for n, res in results.items()})
    rows = []
    for name, res in results.items():
        tt, ts = time_to_target(curves[name], target)
        tt_cpu = next((row["cpu_time_s"] for row in curves[name] if row["step"] == ts), float("nan"))
        rows.append({**{k: v for k, v in res.items() if not k.startswith("test_")},
                     "test_own": res["test_own"][0], "test_own_ci": res["test_own"][1],
                     "test_logreg": res["test_logreg"][0], "test_logreg_ci": res["test_logreg"][1],
                     "target_val": target, "time_to_target_s": tt, "cpu_to_target_s": tt_cpu,
                     "steps_to_target": ts})
    return rows


def ratios(summary) -> dict:
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


def markdown(summary, protocol: Protocol, ratios: dict) -> str:
    """summary.md: the table of every algorithm and shot setting, then the ratios to MTL."""
    lines = [f"Few-shot comparison on {protocol.dataset}, {protocol.backbone}"
             f"{'' if protocol.channels is None else f' ({protocol.channels} channels)'}, {protocol.n_way}-way; "
             f"test: {protocol.test_episodes} episodes x {protocol.test_query} queries/class, "
             f"mean +- 95% CI (t(0.975, episodes-1)*std/sqrt(episodes)); validation: {protocol.val_episodes} fixed "
             f"episodes x {protocol.val_query} queries/class every {protocol.eval_every} steps; "
             "train time excludes evaluation and compilation. Run folders (config, metrics, "
             "checkpoints) in runs/.", "",
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


def figure(curves, summary, protocol: Protocol):
    """Validation accuracy (own head) against training time, one panel per shot setting; a
    matplotlib Figure built without pyplot."""
    from matplotlib.figure import Figure

    shots_list = sorted(curves["shots"].unique())
    x_column, x_label = {"wall": ("train_time_s", "training wall time (s, excl. evaluation)"),
                         "cpu": ("cpu_time_s", "training CPU time (s, process, excl. evaluation)")}[protocol.time_axis]
    fig = Figure(figsize=(5.5 * len(shots_list), 4))
    axes = fig.subplots(1, len(shots_list), squeeze=False)
    for ax, shots in zip(axes[0], shots_list):
        sub = curves[curves["shots"] == shots]
        for name, grp in sub.groupby("algorithm", sort=False):
            ax.plot(grp[x_column], 100 * grp["val_own"], marker=".", label=name)
        tgt = summary[summary["shots"] == shots]["target_val"]
        if len(tgt):
            ax.axhline(100 * float(tgt.iloc[0]), color="grey", ls="--", lw=1,
                       label="target" + (" (best GBML - 1 pt)" if protocol.target == "gbml-1" else ""))
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation accuracy, own head (%)")
        ax.set_title(f"{protocol.dataset}{' + rotations' if protocol.rotations else ''} {protocol.n_way}-way "
                     f"{shots}-shot, {protocol.backbone}; val {protocol.val_episodes} episodes x "
                     f"{protocol.val_query} q", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
