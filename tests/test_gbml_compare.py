"""The compare command's pure pieces: time to target, the auto target, argument errors."""

import math

import pytest

from ntk_bridge.cli import main
from ntk_bridge.commands import compare
from ntk_bridge.errors import BridgeError

CURVE = [{"step": 20, "train_time_s": 5.0, "val_own": 0.40},
         {"step": 40, "train_time_s": 11.0, "val_own": 0.55},
         {"step": 60, "train_time_s": 16.5, "val_own": 0.52},
         {"step": 80, "train_time_s": 22.0, "val_own": 0.61}]


def test_time_to_target_is_first_crossing():
    assert compare.time_to_target(CURVE, 0.55) == (11.0, 40)   # >= counts
    assert compare.time_to_target(CURVE, 0.56) == (22.0, 80)   # a later dip does not count
    assert compare.time_to_target(CURVE, 0.30) == (5.0, 20)
    t, s = compare.time_to_target(CURVE, 0.62)
    assert math.isnan(t) and s == -1


def test_auto_target_is_lowest_best_floored():
    assert compare.auto_target({"a": 0.6123, "b": 0.4019, "c": 0.9}) == pytest.approx(0.40)
    assert compare.auto_target({"a": 0.4050}) == pytest.approx(0.405)
    # every method reaches the auto target by construction
    best = {"x": max(r["val_own"] for r in CURVE)}
    assert not math.isnan(compare.time_to_target(CURVE, compare.auto_target(best))[0])


def test_parse_target():
    assert compare.parse_target("auto") is None
    assert compare.parse_target("0.9") == 0.9
    for bad in ("90", "0", "x"):
        with pytest.raises(BridgeError, match="--target"):
            compare.parse_target(bad)


def test_cli_rejects_unknown_algorithm_in_one_line(capsys):
    assert main(["compare", "--algorithms", "mtl,reptile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown algorithm(s) reptile")
