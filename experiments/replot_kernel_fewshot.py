"""Redraw figures/kernel_fewshot.png from the committed kernel few-shot results, computing nothing.

    python experiments/replot_kernel_fewshot.py [--results experiments/results/kernel_fewshot]
        [--synthetic experiments/results/depth_sweep/depth_sweep.csv] [--figure figures/kernel_fewshot.png]

The committed run (its README) used trained encoders that are not in the repository (runs/ is
ignored), so the command itself cannot be rerun here; its figure is the module's plot function
(:func:`ntk_bridge.studies.kernel_fewshot.plot`) of its committed accuracy.csv and distances.csv, with the
title from its run.json, which is exactly what this script calls.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def main(argv=None) -> int:
    from ntk_bridge.errors import require
    from ntk_bridge.io import save_figure
    from ntk_bridge.studies import kernel_fewshot as kf

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="experiments/results/kernel_fewshot")
    p.add_argument("--synthetic", default="experiments/results/depth_sweep/depth_sweep.csv")
    p.add_argument("--figure", default="figures/kernel_fewshot.png")
    args = p.parse_args(argv)
    results = Path(args.results)
    for name in ("accuracy.csv", "distances.csv", "run.json"):
        require((results / name).is_file(), f"{results / name} is missing; run `ntk-bridge kernel-fewshot` first")
    title = json.loads((results / "run.json").read_text())["title"]
    fig = kf.plot(pd.read_csv(results / "accuracy.csv"), pd.read_csv(results / "distances.csv"),
                  kf.synthetic_distances(args.synthetic), title)
    save_figure(Path(args.figure), fig)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
