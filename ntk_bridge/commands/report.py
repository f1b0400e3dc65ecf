"""Collect every result into one markdown report and figures/report_*.png.

Reads the synthetic depth sweep, the width sweep(s), the kernel few-shot run, trainer
comparisons and trainer run folders from the folders below (defaults: where each command writes
by default under experiments/results/ and runs/). Whatever is missing is listed as "not run"
together with the command that would produce it; the report is written either way.

The report has: the theory claims and their measured status; MTL-GBML distance vs depth (synthetic
and real Omniglot tasks) and finite-width error vs width; kernel-regime accuracy beside the
accuracy of trained networks on the same Omniglot test alphabets (each kernel predictor at the
depth chosen on validation episodes: every selection is made on validation data); MTL vs GBML accuracy and
training cost; and the paper's reference numbers beside ours, each with its protocol (episodes,
queries per class, interval, backbone, data set).

Example:
    ntk-bridge report
    ntk-bridge report --compare experiments/results/compare_omniglot --out /tmp/report.md --figures /tmp/fig
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth-sweep", default="experiments/results/depth_sweep",
                   help="depth-sweep output folder (default experiments/results/depth_sweep)")
    p.add_argument("--width-sweep", default="experiments/results/width_sweep",
                   help="width-sweep output folder; its sub-folders with a summary.csv are read too")
    p.add_argument("--kernel-fewshot", default="experiments/results/kernel_fewshot",
                   help="kernel-fewshot output folder (default experiments/results/kernel_fewshot)")
    p.add_argument("--kernel-validation", default=None, metavar="DIR",
                   help="the kernel-fewshot run on validation episodes (--test-split val) that chooses each kernel "
                        "predictor's depth (default: the --kernel-fewshot folder's name + '_val'); without it the "
                        "smallest depth is shown, never the best test depth")
    p.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="compare output folder (repeatable; default every experiments/results/compare*)")
    p.add_argument("--regime-map", default="experiments/results/regime_map",
                   help="regime-map output folder (default experiments/results/regime_map)")
    p.add_argument("--runs", default="experiments/results/omniglot_mtl",
                   help="folder holding train run folders (default experiments/results/omniglot_mtl, the committed runs)")
    p.add_argument("--out", default="experiments/results/report.md",
                   help="report path (default experiments/results/report.md; replaced whole when the report is done)")
    p.add_argument("--figures", default="figures", help="folder for report_*.png (default figures)")


def run(args) -> int:
    from pathlib import Path

    from ntk_bridge.report import build, loading

    sources = loading.Sources(depth_sweep=Path(args.depth_sweep), width_sweep=Path(args.width_sweep),
                             kernel_fewshot=Path(args.kernel_fewshot),
                             kernel_validation=Path(args.kernel_validation) if args.kernel_validation else None,
                             compare=[Path(c) for c in args.compare],
                             runs=Path(args.runs), regime_map=Path(args.regime_map))
    path, figures = build.write(sources, Path(args.out), Path(args.figures))
    text = path.read_text()
    not_run = [line for line in text.splitlines() if "**not run**" in line]
    print(f"wrote {path} ({len(text.splitlines())} lines) and {len(figures)} figures: "
          + ", ".join(str(f) for f in figures))
    if not_run:
        print(f"{len(not_run)} inputs not run:")
        for line in not_run:
            print("  " + line.strip("| "))
    return 0
