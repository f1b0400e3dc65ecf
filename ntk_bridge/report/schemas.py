"""The result files each command writes, declared once: file names, the columns others may read, units.

A producer writes its tables with :func:`write_table` (which refuses a frame lacking a declared
column, so a renamed column fails where it is made, not in a reader) and lists its files with
:meth:`ResultSchema.files`; ``ntk-bridge report`` reads the parts it needs by their keys and
checks each table with :func:`check_columns`, which refuses a file lacking a declared column by name. A table may carry more columns than it
declares; declared ones are a promise.

Units: ``""`` dimensionless, ``"fraction"`` accuracy in [0, 1], ``"%"`` accuracy in percent,
``"s"`` seconds, ``"ms"`` milliseconds; ``"id"`` a label or count; ``"text"`` free text (a reason).

Imports nothing heavy (pandas only inside the helpers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ntk_bridge.errors import BridgeError


@dataclass(frozen=True)
class Table:
    """One CSV file: its name, {column: unit} readers may rely on, and whether it may be absent.

    ``digits``: significant digits its float columns are written with (``%.{digits}g``); None
    writes every float in full (shortest repr, 17 digits at most)."""

    file: str
    columns: Mapping[str, str]
    optional: bool = False
    digits: int | None = None


@dataclass(frozen=True)
class Document:
    """One JSON file (free-form record: configs, run notes) and whether it may be absent."""

    file: str
    optional: bool = False


@dataclass(frozen=True)
class Artifact:
    """Any other file of the folder (a markdown summary, a figure), listed so the folder is complete."""

    file: str


@dataclass(frozen=True)
class ResultSchema:
    """The result folder of one command: ``parts`` {key: Table | Document}."""

    command: str
    parts: Mapping[str, Table | Document | Artifact]

    def files(self) -> tuple[str, ...]:
        """Every declared file name, in declaration order."""
        return tuple(p.file for p in self.parts.values())

    def file(self, key: str) -> str:
        return self.parts[key].file


def missing_columns(table: Table, columns) -> list[str]:
    """Declared columns of ``table`` that ``columns`` lacks."""
    have = set(columns)
    return [c for c in table.columns if c not in have]


def write_table(folder: Path, table: Table, frame) -> Path:
    """Write ``frame`` as ``folder / table.file`` after checking it has every declared column
    (a ValueError otherwise: a producer that breaks its own declaration is a bug). A frame with
    no rows and no columns (e.g. no slope to fit from one width) is written as the declared header."""
    import pandas as pd

    from ntk_bridge.io import write_csv

    if frame.empty and len(frame.columns) == 0:
        frame = pd.DataFrame(columns=list(table.columns))
    lacking = missing_columns(table, frame.columns)
    if lacking:
        raise ValueError(f"{table.file}: the frame lacks declared column(s) {', '.join(lacking)}")
    path = Path(folder) / table.file
    write_csv(path, frame, digits=table.digits)
    return path


def check_columns(path: Path, table: Table, frame, command: str) -> None:
    """BridgeError naming ``path`` and the columns it lacks (written by another version of ``command``)."""
    lacking = missing_columns(table, frame.columns)
    if lacking:
        raise BridgeError(f"{path} lacks column(s) {', '.join(lacking)} (written by another version of "
                          f"`{command}`?); re-run it")


ACCURACY_CI = "% (95% t-interval half-width)"

# The depth sweep's tables (the README's main job, committed) carry 6 significant digits: what the
# arithmetic supports across machines. Measured by experiments/depth_sweep_digits.py on the default
# sweep (20 draws, depths 1..256): one BLAS / XLA thread instead of two changes no bit; one ulp of
# rounding at each of the 256 layers of the kernel recursion (another CPU's arcsin / sqrt) moves
# values by up to 7.4e-11 relative (5.7e-11 and 6.1e-11 for two other sign draws), so the text of
# 2-7 cells of depth_sweep.csv differs at 10 digits and 27-44 at 11. At 6 digits the expected
# number of cells whose text changes on such a machine (the sum over cells of |a - b| / the spacing
# of %.6g) is 5e-4 to 6e-4 for depth_sweep.csv, 1e-5 to 2e-5 for summary.csv and 3e-7 to 4e-7 for
# errors.csv; none changed in the three runs (at 7 digits one did: d_rel 0.0087558254999899 vs
# 0.0087558255003, a value 1e-11 from the boundary). A rerun elsewhere can still flip a last digit
# that way, improbably. 6 digits is far below the spread over draws (the 95% intervals in
# errors.csv are 12-20 % of their means), so nothing the study reports is lost.
DEPTH_SWEEP_DIGITS = 6

DEPTH_SWEEP = ResultSchema("ntk-bridge depth-sweep", {
    "config": Document("config.json", optional=True),
    "frame": Table("depth_sweep.csv", {"depth": "id", "pair": "id", "draw": "id", "d_rel": "", "d_tr": "",
                                       "err_a": "", "err_b": "", "err_head_only": ""},
                   digits=DEPTH_SWEEP_DIGITS),
    "summary": Table("summary.csv", {"pair": "id", "depth_lo": "id", "depth_hi": "id", "d_rel_lo": "",
                                     "d_rel_hi": "", "d_tr_lo": "", "d_tr_hi": "", "rate_d_rel": "",
                                     "rate_d_tr": ""}, digits=DEPTH_SWEEP_DIGITS),
    "errors": Table("errors.csv", {"depth": "id", "method": "id", "err_mean": "", "err_ci95": "",
                                   "draws": "id"}, digits=DEPTH_SWEEP_DIGITS),
})

WIDTH_SWEEP = ResultSchema("ntk-bridge width-sweep", {
    "config": Document("config.json"),
    "errors": Table("errors.csv", {"method": "id", "width": "id", "seed": "id"}),
    "pairs": Table("pairs.csv", {"width": "id", "seed": "id", "pair": "id", "d_rel_net": "", "d_rel_closed": "",
                                 "d_tr_net": "", "d_tr_closed": ""}, optional=True),
    "run": Document("run.json", optional=True),
    "summary": Table("summary.csv", {"quantity": "id", "slope": "", "slope_seed_mean": "",
                                     "slope_seed_ci95": "", "widest": "id", "at_widest": "",
                                     "at_widest_ci95": ""}),
    "table": Table("error_table.csv", {"method": "id", "width": "id", "rel_error": "",
                                       "rel_error_ci95": ""}),
})

KERNEL_FEWSHOT = ResultSchema("ntk-bridge kernel-fewshot", {
    "config": Document("config.json"),
    "episodes": Table("episodes.csv", {"episode": "id", "method": "id", "accuracy": "%"}),
    "accuracy": Table("accuracy.csv", {"kernel": "id", "shots": "id", "depth": "id", "method": "id",
                                       "acc_mean": "%", "acc_ci95": ACCURACY_CI, "episodes": "id",
                                       "n_query": "id", "n_way": "id", "train_episodes": "id"}),
    "distances": Table("distances.csv", {"kernel": "id", "shots": "id", "depth": "id", "pair": "id",
                                         "d_rel": "", "d_tr": "", "d_rel_ep_mean": "", "d_rel_ep_ci95": "",
                                         "agree": "fraction"}),
    "vs_synthetic": Table("distance_vs_synthetic.csv", {}, optional=True),
    "rates": Table("distance_rates.csv", {}, optional=True),
    "timing": Table("timing.csv", {}),
    "comparison": Table("comparison.csv", {}, optional=True),
    "run": Document("run.json", optional=True),
})

COMPARE = ResultSchema("ntk-bridge compare", {
    "summary": Table("summary.csv", {
        "algorithm": "id", "shots": "id", "steps": "id", "train_time_s": "s", "cpu_time_s": "s",
        "compile_s": "s", "step_ms": "ms", "images_per_s": "", "best_val_own": "fraction",
        "test_own": "%", "test_own_ci": ACCURACY_CI, "test_logreg": "%", "test_logreg_ci": ACCURACY_CI,
        "target_val": "fraction", "time_to_target_s": "s", "cpu_to_target_s": "s", "steps_to_target": "id"}),
    "curves": Table("curves.csv", {"algorithm": "id", "shots": "id", "step": "id", "train_time_s": "s",
                                   "cpu_time_s": "s", "val_own": "fraction", "val_logreg": "fraction"}),
    "markdown": Artifact("summary.md"),
    "ratios": Document("ratios.json", optional=True),
    "config": Document("config.json"),
    "figure": Artifact("compare.png"),       # the default --figure (OUT/compare.png)
})

REGIME_MAP = ResultSchema("ntk-bridge regime-map", {
    "frame": Table("regime_map.csv", {"cell": "id", "depth": "id", "pair": "id", "draw": "id",
                                      "d_rel": "", "d_tr": ""}),
    "cells": Table("cells.csv", {"cell": "id", "net": "id", "inner": "id", "outer_time": "", "pair": "id",
                                 "depth_max": "id", "rate_d_rel": "", "rate_d_tr": "", "rate_d_tr_lo": "",
                                 "rate_d_tr_hi": "", "gain_a_L1": "", "gain_a_Lmax": "", "gain_b_L1": "",
                                 "gain_b_Lmax": ""}),
    "verdicts": Table("verdicts.csv", {"cell": "id", "pair": "id", "holds": "", "weak_holds": "",
                                       "reason": "text"}),
    "config": Document("config.json"),
    "run": Document("run.json", optional=True),
})
