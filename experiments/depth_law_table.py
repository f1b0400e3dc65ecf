"""The depth law beside the exact predictors for a set of regime-map cells (docs/theory.md 8, its table).

Re-create (about 3 min CPU on 2 cores; writes experiments/results/depth_law/{law_vs_measured.csv,table.md,config.json}):

    nice -n 10 .venv/bin/python experiments/depth_law_table.py

Each cell is a regime of `ntk-bridge regime-map` (its default family and draws: 10 draws of the
teacher family, 10 training / 10 test tasks, n_q = n_s = 5), at depths 256, 1024, 4096 (the law is
asymptotic); `ntk-bridge regime-map --law CELL --law-depths 256,1024,4096` prints the same numbers for one cell.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from ntk_bridge.io import write_csv, write_json
from ntk_bridge.studies import depth_law
from ntk_bridge.studies.regime_map import RegimeMapConfig

CELLS = ("relu-b0|fixed|t=inf", "relu-b0|ridge|t=inf", "relu-b0|depth-norm|t=1", "relu-b0.1|depth-norm|t=inf",
         "relu-b0.5|depth-norm|t=inf", "relu-b0.5|ridge|t=inf", "erf-critical|fixed|t=inf", "erf-critical|fixed|t=10")
DEPTHS = (256, 1024, 4096)
OUT = Path("experiments/results/depth_law")


def study(config: RegimeMapConfig, key: str):
    cell = {c.key: c for c in config.cells()}[key]
    s = config.study(cell)
    return replace(s, depths=DEPTHS, net=replace(s.net, depth=max(DEPTHS)))


def markdown(table: pd.DataFrame) -> str:
    lines = ["| network / inner / outer | L | quantity | predicted mean (sd) | measured mean (sd) | max rel. gap |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        pred = "-" if not math.isfinite(r.predicted) else f"{r.predicted:.4g} ({r.predicted_sd:.2g})"
        lines.append(f"| {r.cell} | {r.depth} | {r.quantity} | {pred} | {r.measured:.4g} ({r.measured_sd:.2g}) | "
                     f"{r.max_rel_gap:.2g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    config = RegimeMapConfig()
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "config.json", {"command": "python experiments/depth_law_table.py", "cells": list(CELLS),
                                     "depths": list(DEPTHS), "draws": config.draws, "seed": config.seed,
                                     "family": asdict(config.family)})
    frames = []
    for key in CELLS:
        t = depth_law.summarize_comparison(depth_law.compare_cell(study(config, key), progress=True))
        t.insert(0, "cell", key)
        frames.append(t)
        print(key, "done", file=sys.stderr)
    table = pd.concat(frames, ignore_index=True)
    write_csv(OUT / "law_vs_measured.csv", table)
    (OUT / "table.md").write_text(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
