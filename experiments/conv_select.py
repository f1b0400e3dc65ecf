"""The conv-kernel studies (14x14, 28x28): each kernel predictor's depth chosen on validation episodes, read on test.

Reads two ``ntk-bridge kernel-fewshot`` result folders made with the same flags except
``--test-split`` (``val``: episodes from the validation alphabet; ``test``: the held-out test
alphabets) and ``--out``; refuses them if any other protocol field differs. For every kernel (FC,
conv), label space, shot setting and method, the depth with the highest VALIDATION mean accuracy is
chosen (the smallest on ties) and the TEST accuracy at that depth is reported beside it; the test
numbers never enter a choice. The trained Conv-4 rows (no depth) are copied as they are.

Then, for every label space, shot setting and method present with both kernels, the PAIRED difference
conv minus FC on the identical test episodes (each kernel at its own validation-chosen depth; the
per-episode accuracies of episodes.csv): mean and 95% t-interval over the test episodes.

Writes OUT/selected.csv and OUT/paired.csv and prints markdown tables (method x kernel / label space;
method x label space).

    .venv/bin/python experiments/conv_select.py experiments/results/kernel_fewshot_conv14/val \\
        experiments/results/kernel_fewshot_conv14/test --out experiments/results/kernel_fewshot_conv14
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

KEYS = ["kernel", "labels", "shots", "method"]
MAY_DIFFER = {"test_split", "test_episodes", "conv_test_episodes"}


def check_protocol(val_dir: Path, test_dir: Path) -> None:
    """Both runs share every config field but the evaluation split and episode counts; val is on 'val'."""
    from ntk_bridge.errors import require

    for folder in (val_dir, test_dir):
        require((folder / "config.json").is_file() and (folder / "accuracy.csv").is_file(),
                f"{folder} is not a finished kernel-fewshot result folder (no config.json / accuracy.csv); "
                "run the study's run.sh (experiments/results/kernel_fewshot_conv*/) first")
    a = json.loads((val_dir / "config.json").read_text())
    b = json.loads((test_dir / "config.json").read_text())
    require(a["test_split"] == "val" and b["test_split"] == "test",
            f"{val_dir} must be scored on the val split and {test_dir} on the test split "
            f"(got {a['test_split']!r} and {b['test_split']!r})")
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in MAY_DIFFER)
    require(not diff, f"the two runs differ in {', '.join(diff)}; rerun with the same flags but --test-split")


def choose(val: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """One row per (kernel, labels, shots, method): depth argmax of validation acc_mean (the smallest
    on ties; :func:`ntk_bridge.report.selection.choose_depths`), its test accuracy; trained networks as read."""
    from ntk_bridge.report.selection import choose_depths

    chosen = choose_depths(test[test["kernel"] != "trained"], val[val["kernel"] != "trained"])
    chosen = chosen.rename(columns={"acc_mean": "test_acc", "acc_ci95": "test_ci95", "episodes": "test_episodes"})
    chosen = chosen.sort_values(KEYS, kind="stable").assign(depth=lambda f: f["depth"].astype(int))
    rows = chosen[KEYS + ["depth", "chosen_by", "test_acc", "test_ci95", "test_episodes", "val_acc", "val_ci95",
                          "val_episodes"]].to_dict("records")
    for r in test[test["kernel"] == "trained"].itertuples():
        rows.append({"kernel": "trained", "labels": "-", "shots": r.shots, "method": r.method, "depth": 0,
                     "chosen_by": "-", "test_acc": r.acc_mean, "test_ci95": r.acc_ci95,
                     "test_episodes": int(r.episodes), "val_acc": np.nan, "val_ci95": np.nan, "val_episodes": 0})
    return pd.DataFrame(rows)


def paired(sel: pd.DataFrame, episodes: pd.DataFrame) -> pd.DataFrame:
    """Conv minus FC accuracy (points) per (labels, shots, method), paired over the test episodes, each kernel
    at its chosen depth: mean, 95% t half-width (metrics.mean_ci) and the number of episodes."""
    from ntk_bridge.errors import require
    from ntk_bridge.stats import mean_ci

    rows = []
    picked = sel[sel["kernel"].isin(["fc", "conv"])]
    for (labels, shots, method), g in picked.groupby(["labels", "shots", "method"], sort=False):
        if set(g["kernel"]) != {"fc", "conv"}:
            continue
        per = {}
        for r in g.itertuples():
            e = episodes[(episodes["kernel"] == r.kernel) & (episodes["labels"] == labels)
                         & (episodes["shots"] == shots) & (episodes["method"] == method) & (episodes["depth"] == r.depth)]
            per[r.kernel] = e.set_index("episode")["accuracy"].sort_index()
        require(per["fc"].index.equals(per["conv"].index),
                f"conv and FC were scored on different test episodes ({labels}, {method}); rerun both in one run")
        diff = 100.0 * (per["conv"] - per["fc"]).to_numpy()
        mean, half = mean_ci(diff)
        rows.append({"labels": labels, "shots": shots, "method": method, "conv_minus_fc": mean, "ci95": half,
                     "episodes": len(diff)})
    return pd.DataFrame(rows)


def paired_markdown(pairs: pd.DataFrame) -> str:
    """The paired differences as a table: method rows, label-space columns."""
    lines = []
    for shots, g in pairs.groupby("shots"):
        labels = list(dict.fromkeys(g["labels"]))
        n = int(g["episodes"].iloc[0])
        lines.append(f"\n{shots}-shot: conv minus FC, points (mean +- 95% t-CI over the {n} paired test episodes)\n")
        lines.append("| method | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for m in dict.fromkeys(g["method"]):
            cells = []
            for ls in labels:
                r = g[(g["labels"] == ls) & (g["method"] == m)]
                cells.append("-" if r.empty else f"{r.conv_minus_fc.iloc[0]:+.1f} +- {r.ci95.iloc[0]:.1f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(sel: pd.DataFrame) -> str:
    """Test accuracy (depth chosen on validation) per method, one column per kernel x label space."""
    lines = []
    for shots, g in sel[sel["kernel"] != "trained"].groupby("shots"):
        cols = [(k, ls) for k in ("fc", "conv") for ls in ("random-slots", "global", "encoding")
                if ((g["kernel"] == k) & (g["labels"] == ls)).any()]
        lines.append(f"\n{shots}-shot: test accuracy % (mean +- 95% t-CI), depth L chosen on validation\n")
        lines.append("| method | " + " | ".join(f"{k.upper()} {ls}" for k, ls in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for m in dict.fromkeys(g["method"]):
            cells = []
            for k, ls in cols:
                r = g[(g["kernel"] == k) & (g["labels"] == ls) & (g["method"] == m)].iloc[0]
                cells.append(f"{r.test_acc:.1f} +- {r.test_ci95:.1f} (L={r.depth}; val {r.val_acc:.1f})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        for r in sel[(sel["kernel"] == "trained") & (sel["shots"] == shots)].itertuples():
            lines.append(f"\ntrained {r.method}: {r.test_acc:.1f} +- {r.test_ci95:.1f} ({r.test_episodes} test episodes)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("val_dir", type=Path, help="kernel-fewshot result folder scored on --test-split val")
    p.add_argument("test_dir", type=Path, help="the same run scored on --test-split test")
    p.add_argument("--out", type=Path, required=True, help="folder for selected.csv")
    args = p.parse_args(argv)
    check_protocol(args.val_dir, args.test_dir)
    sel = choose(pd.read_csv(args.val_dir / "accuracy.csv"), pd.read_csv(args.test_dir / "accuracy.csv"))
    from ntk_bridge.io import atomic_write

    pairs = paired(sel, pd.read_csv(args.test_dir / "episodes.csv"))
    atomic_write(args.out / "selected.csv", lambda fh: sel.to_csv(fh, index=False, float_format="%.6g"))
    atomic_write(args.out / "paired.csv", lambda fh: pairs.to_csv(fh, index=False, float_format="%.6g"))
    print(markdown(sel))
    print(paired_markdown(pairs))
    return 0


if __name__ == "__main__":
    from ntk_bridge.commands.cli import script_exit

    raise SystemExit(script_exit(main))
