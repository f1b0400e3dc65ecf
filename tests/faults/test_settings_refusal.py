"""The "different settings" refusal names the first differing nested setting and both its values
(issue 34: nested values were cut at 40 characters, so both sides printed the same prefix)."""

from __future__ import annotations

import pytest
from helpers.file_tree import tree

from ntk_bridge.errors import BridgeError
from ntk_bridge.io import first_difference, result_folder, settings_differences, write_json

SAVED = {"command": "depth-sweep", "depths": [1, 2, 4, 8], "draws": 20,
         "predictor": {"inner": {"eps": 1e-06, "form": "flow", "lam": 1.0, "mu": 0.1, "tau": 1.0},
                       "outer_ridge": 1e-06, "outer_time": "inf"}}


def _with(path: str, value):
    import copy

    out = copy.deepcopy(SAVED)
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return out


@pytest.mark.parametrize("path, value, line", [
    ("predictor.inner.tau", 2.0, "predictor.inner.tau: 1.0 there vs 2.0 now"),
    ("predictor.inner.form", "gd", 'predictor.inner.form: "flow" there vs "gd" now'),
    ("predictor.outer_ridge", 0.001, "predictor.outer_ridge: 1e-06 there vs 0.001 now"),
    ("depths", [1, 2, 4, 16], "depths[3]: 8 there vs 16 now"),
    ("depths", [1, 2], "depths: [1, 2, 4, 8] there vs [1, 2] now"),
    ("draws", 5, "draws: 20 there vs 5 now"),
])
def test_the_first_differing_path_and_both_values(path, value, line):
    assert settings_differences(SAVED, _with(path, value)) == [line]


def test_a_nested_key_only_on_one_side_is_shown_absent():
    now = _with("predictor.inner", {**SAVED["predictor"]["inner"], "steps": 3})
    assert settings_differences(SAVED, now) == ["predictor.inner.steps: absent there vs 3 now"]
    assert first_difference(SAVED, SAVED, "config") is None


def test_the_refusal_is_one_line_naming_the_path_and_changes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_json(out / "config.json", SAVED)
    before = tree(tmp_path)
    with pytest.raises(BridgeError) as err:
        with result_folder(out, "--out", settings=_with("predictor.inner.tau", 3.0)):
            pass
    text = str(err.value)
    assert "\n" not in text and "predictor.inner.tau: 1.0 there vs 3.0 now" in text and "--overwrite" in text
    assert tree(tmp_path) == before
