"""Selections for the report's figures and tables, made on validation data and never on test data.

Whatever is chosen among several candidates (a kernel predictor's depth, the best method of a
comparison, the best run for a reference row) is chosen by a validation metric; the test metric of
the chosen candidate is then read, never compared. Where no validation metric exists, a rule
fixed before looking at any result is used instead (:data:`FIXED_DEPTH_RULE`), and the output
says which rule chose each row (column ``chosen_by``).

Pure functions of DataFrames; tests/report/test_report_selection.py checks that permuting the test
numbers never changes a choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ntk_bridge.errors import require

DEPTH_KEYS = ("kernel", "shots", "method")      # one depth is chosen per kernel x shots x method
FIXED_DEPTH_RULE = "fixed: smallest depth"      # the pre-declared depth when no validation episodes exist
VALIDATION_RULE = "validation"


def _argmax_first(values: pd.Series) -> object:
    """Index of the largest finite value (the first such index on ties); None if none is finite."""
    finite = values[np.isfinite(values.astype(float))]
    if finite.empty:
        return None
    return finite.index[int(np.argmax(finite.to_numpy()))]


def choose_depths(test: pd.DataFrame, validation: pd.DataFrame | None) -> pd.DataFrame:
    """One row per kernel x shots x method (x label space, when both tables have ``labels``) of
    ``test``: the depth chosen on validation accuracy.

    ``test`` and ``validation`` are kernel-fewshot ``accuracy.csv`` tables (columns kernel, shots,
    method, depth, acc_mean, acc_ci95, episodes, n_query). The chosen depth maximises the
    validation ``acc_mean`` (the smallest depth on ties); a key without validation rows gets the
    smallest depth (:data:`FIXED_DEPTH_RULE`). Returns the test row at that depth with
    ``chosen_by``, ``val_acc``, ``val_ci95`` and ``val_episodes`` beside it.
    """
    keys = list(DEPTH_KEYS)
    if "labels" in test.columns and (validation is None or "labels" in validation.columns):
        keys.append("labels")                    # one choice per label space too, when the tables have them
    for name, frame in (("test", test), ("validation", validation)):
        if frame is not None:
            missing = set(keys + ["depth", "acc_mean"]) - set(frame.columns)
            require(not missing, f"the {name} accuracy table lacks columns {sorted(missing)}")
    val = {} if validation is None else {k: g for k, g in validation.groupby(keys, sort=True)}
    rows = []
    for key, g in test.groupby(keys, sort=True):
        g = g.sort_values("depth")
        v = val.get(key)
        pick = None if v is None else _argmax_first(v.sort_values("depth").set_index("depth")["acc_mean"])
        if pick not in set(g["depth"]):          # no validation row, or a depth the test run lacks
            pick = None
        chosen = g["depth"].iloc[0] if pick is None else pick
        row = g[g["depth"] == chosen].iloc[0].to_dict()
        at = v[v["depth"] == chosen].iloc[0] if pick is not None and v is not None else None
        row.update(chosen_by=VALIDATION_RULE if at is not None else FIXED_DEPTH_RULE,
                   val_acc=float(at["acc_mean"]) if at is not None else float("nan"),
                   val_ci95=float(at.get("acc_ci95", float("nan"))) if at is not None else float("nan"),
                   val_episodes=int(at["episodes"]) if at is not None and "episodes" in at else 0)
        rows.append(row)
    return pd.DataFrame(rows)


def best_on_validation(frame: pd.DataFrame, val_col: str) -> pd.Series | None:
    """The row of ``frame`` with the largest finite ``val_col`` (the first on ties); None if none has one."""
    require(val_col in frame.columns, f"no validation column {val_col!r} to choose on")
    if frame.empty:
        return None
    i = _argmax_first(frame[val_col])
    return None if i is None else frame.loc[i]
