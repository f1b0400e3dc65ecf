"""Every selection behind the report's figures is made on validation data, never on test data.

The check is an invariance: permuting (or reversing) the test accuracies over the candidates must
never change what is chosen; the chosen row's test number is read afterwards.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntk_bridge.report import build, loading, sections
from ntk_bridge.report.selection import FIXED_DEPTH_RULE, VALIDATION_RULE, best_on_validation, choose_depths

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "experiments" / "results" / "kernel_fewshot"
KERNEL_VAL = ROOT / "experiments" / "results" / "kernel_fewshot_val"


def _acc(values: dict, kernel="fc", shots=1) -> pd.DataFrame:
    """An accuracy table: {method: [acc at depth 1, 4, 16]}."""
    rows = [{"kernel": kernel, "shots": shots, "method": m, "depth": d, "acc_mean": a, "acc_ci95": 1.0,
             "episodes": 10, "n_query": 5}
            for m, accs in values.items() for d, a in zip((1, 4, 16), accs)]
    return pd.DataFrame(rows)


def test_depth_is_the_validation_argmax_and_test_numbers_are_only_read():
    test = _acc({"anil": [30.0, 50.0, 40.0], "mtl-b": [60.0, 20.0, 10.0]})
    val = _acc({"anil": [45.0, 35.0, 55.0], "mtl-b": [10.0, 10.0, 12.0]})
    got = choose_depths(test, val).set_index("method")
    assert got.loc["anil", "depth"] == 16 and got.loc["anil", "acc_mean"] == 40.0    # test argmax would be 4
    assert got.loc["mtl-b", "depth"] == 16 and got.loc["mtl-b", "acc_mean"] == 10.0  # test argmax would be 1
    assert (got["chosen_by"] == VALIDATION_RULE).all()
    assert got.loc["anil", "val_acc"] == 55.0


def test_permuting_test_accuracies_never_changes_a_choice():
    rng = np.random.default_rng(0)
    for _ in range(20):
        methods = {m: list(rng.uniform(20, 80, 3)) for m in ("anil", "maml", "mtl-b", "head-only")}
        test = _acc(methods)
        val = _acc({m: list(rng.uniform(20, 80, 3)) for m in methods})
        base = choose_depths(test, val)[["method", "depth"]]
        shuffled = test.copy()
        shuffled["acc_mean"] = rng.permutation(shuffled["acc_mean"].to_numpy())
        pd.testing.assert_frame_equal(choose_depths(shuffled, val)[["method", "depth"]], base)


def test_ties_take_the_smallest_depth_and_no_validation_takes_the_fixed_rule():
    test = _acc({"anil": [30.0, 50.0, 40.0]})
    tie = choose_depths(test, _acc({"anil": [50.0, 50.0, 20.0]}))
    assert int(tie["depth"].iloc[0]) == 1
    fixed = choose_depths(test, None)
    assert int(fixed["depth"].iloc[0]) == 1 and fixed["chosen_by"].iloc[0] == FIXED_DEPTH_RULE
    nan_val = choose_depths(test, _acc({"anil": [np.nan] * 3}))
    assert nan_val["chosen_by"].iloc[0] == FIXED_DEPTH_RULE and int(nan_val["depth"].iloc[0]) == 1
    other_key = choose_depths(test, _acc({"anil": [1.0, 2.0, 3.0]}, kernel="conv"))
    assert other_key["chosen_by"].iloc[0] == FIXED_DEPTH_RULE


def test_best_on_validation_ignores_test_columns():
    frame = pd.DataFrame({"algorithm": ["a", "b", "c"], "val": [70.0, 90.0, np.nan], "acc": [99.0, 50.0, 100.0]})
    assert best_on_validation(frame, "val")["algorithm"] == "b"
    frame["acc"] = frame["acc"][::-1].to_numpy()
    assert best_on_validation(frame, "val")["algorithm"] == "b"
    assert best_on_validation(frame.assign(val=np.nan), "val") is None


@pytest.mark.skipif(not (KERNEL / "accuracy.csv").exists() or not (KERNEL_VAL / "accuracy.csv").exists(),
                    reason="the committed kernel few-shot results are not present")
def test_report_figure_data_do_not_depend_on_test_accuracies(tmp_path, monkeypatch):
    """Build the report's accuracy figure data from the committed runs, then from a copy whose test
    accuracies are reversed within every kernel x shots x method: the chosen depths must be equal."""
    seen = []
    monkeypatch.setattr(sections, "figure_accuracy", lambda chosen, trained: seen.append(chosen) or _Fig())
    missing = tmp_path / "missing"

    def chosen_for(kernel_dir):
        sources = loading.Sources(depth_sweep=missing, width_sweep=missing, kernel_fewshot=kernel_dir,
                                 kernel_validation=KERNEL_VAL, compare=[missing], runs=missing, regime_map=missing)
        text, _ = build.build(sources, tmp_path / "figs")
        assert "chosen on **validation episodes**" in text
        return seen[-1].sort_values(["kernel", "shots", "method"]).reset_index(drop=True)

    original = chosen_for(KERNEL)
    copy = tmp_path / "kernel_fewshot"
    shutil.copytree(KERNEL, copy, ignore=shutil.ignore_patterns("encoders", "episodes.csv"))
    acc = pd.read_csv(copy / "accuracy.csv")
    keys = ["kernel", "labels", "shots", "method"]
    acc["acc_mean"] = acc.groupby(keys)["acc_mean"].transform(lambda s: s.to_numpy()[::-1])
    acc.to_csv(copy / "accuracy.csv", index=False)
    reversed_ = chosen_for(copy)
    assert (original["chosen_by"] == VALIDATION_RULE).all()
    pd.testing.assert_series_equal(original["depth"], reversed_["depth"])
    # the chosen rows carry the (reversed) test numbers of the chosen depths: read, not chosen on
    assert not np.allclose(original["acc_mean"], reversed_["acc_mean"])


class _Fig:
    """Stands in for a matplotlib figure (build() only stores it)."""
