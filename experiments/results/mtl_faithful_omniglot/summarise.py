"""Summarise the run folders of run.sh: summary.md (one row per run, the test head chosen on
validation) and curves.png (training accuracy per step, running mean over 10 steps, and the
validation accuracies). Reads runs/<algorithm>_1shot/{config,metrics,steps,summary}; writes beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

HERE = Path(__file__).resolve().parent


def row(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    metrics = pd.read_csv(run / "metrics.csv")
    best = metrics.loc[metrics["val_acc"].idxmax()]
    heads = list(summary["test_heads"])
    # the test head chosen on validation: the head with the best validation accuracy at the best step
    val_of = {h: best.get(f"val_{h}", best["val_acc"]) for h in heads}
    chosen = max(heads, key=lambda h: val_of[h])
    test = summary["test_heads"][chosen]
    steps = pd.read_csv(run / "steps.csv")
    per_class = (config["algorithm_options"] or {}).get("images_per_class") or config["shots"] + config["train_query"]
    return {"run": run.name, "algorithm": config["algorithm"], "steps": summary["steps"],
            "tasks": summary["steps"] * config["meta_batch"], "images_per_class": per_class,
            "normalize_features": config["normalize_features"], "train_s": round(summary["train_s"], 1),
            "train_acc_last10": round(100 * steps["acc"].tail(10).mean(), 1),
            "best_val": round(float(best["val_acc"]), 2), "best_step": int(best["step"]),
            "val_by_head": {h: round(float(v), 2) for h, v in val_of.items()}, "test_head": chosen,
            "test": f"{test['mean']:.2f} +- {test['ci95']:.2f}", "test_episodes": test["episodes"],
            "other_heads": {h: f"{r['mean']:.2f} +- {r['ci95']:.2f}" for h, r in summary["test_heads"].items()
                            if h != chosen},
            "stop_reason": summary["stop_reason"]}


def main() -> None:
    runs = sorted(p for p in (HERE / "runs").iterdir() if (p / "summary.json").is_file())
    rows = [row(r) for r in runs]
    cols = ["algorithm", "steps", "tasks", "images_per_class", "normalize_features", "train_s", "train_acc_last10",
            "best_val", "best_step", "val_by_head", "test_head", "test", "test_episodes", "other_heads"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "stop reasons: " + "; ".join(f"{r['algorithm']}: {r['stop_reason']}" for r in rows)]
    (HERE / "summary.md").write_text("\n".join(lines) + "\n")
    (HERE / "summary.json").write_text(json.dumps(rows, indent=2))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for run in runs:
        steps = pd.read_csv(run / "steps.csv")
        line, = ax.plot(steps["step"], 100 * steps["acc"].rolling(10, min_periods=1).mean(), label=f"{run.name} train")
        m = pd.read_csv(run / "metrics.csv")
        ax.plot(m["step"], m["val_acc"], "o--", color=line.get_color(), label=f"{run.name} val")
    ax.set_xlabel("step (6 tasks of 5 x 10 images each)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Omniglot 5-way 1-shot, Conv-4 (64 ch): train (running mean) vs validation", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
