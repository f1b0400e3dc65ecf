"""A run killed between checkpoints resumes to the same final weights and metrics."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers.train_data import synthetic_data, tiny_config  # noqa: E402  (tests/ on sys.path, conftest.py)

from ntk_bridge.train.checkpoints import managers, restore, state_tree
from ntk_bridge.train.loop import init_state, train  # noqa: E402

TIMING = {"images_per_s"}


class Killed(Exception):
    pass


def final_weights(run_dir, config, data):
    _, _, state, _ = init_state(config, data)
    latest, _ = managers(run_dir)
    tree, loop = restore(latest, latest.latest_step(), state_tree(state), with_loop=True)
    return jax.tree_util.tree_leaves(tree), loop


def strip_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.slow
def test_kill_between_checkpoints_then_resume_is_exact(tmp_path):
    data = synthetic_data()
    # 7 steps, checkpoints every 3 and at the end, validation every 2: the kill at step 5 is
    # after the checkpoint of step 3 and after the validation of step 4, so the resume redoes
    # steps 4-5 (and the validation at 4) from the checkpoint
    config = tiny_config(max_steps=7, checkpoint_every=3, eval_every=2)
    full = train(config, tmp_path / "full", data=data)

    def kill_at_5(step, loop):
        if step == 5:
            raise Killed()

    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", callback=kill_at_5, data=data)
    assert managers(tmp_path / "resumed")[0].latest_step() == 3
    resumed = train(config, tmp_path / "resumed", data=data)

    w_full, loop_full = final_weights(tmp_path / "full", config, data)
    w_res, loop_res = final_weights(tmp_path / "resumed", config, data)
    assert len(w_full) == len(w_res)
    for a, b in zip(w_full, w_res):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise
    assert strip_timing(loop_full["history"]) == strip_timing(loop_res["history"])
    assert [h["step"] for h in loop_res["history"]] == [2, 4, 6, 7]
    for key in ("best_step", "best_val_acc", "steps", "images_seen", "test"):
        assert full[key] == resumed[key], key
    saved = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert strip_timing(saved) == strip_timing(loop_full["history"])


def test_finished_run_is_not_retrained(tmp_path):
    data = synthetic_data()
    config = tiny_config(max_steps=2, checkpoint_every=2, eval_every=2)
    first = train(config, tmp_path / "r", data=data, evaluate_test=False)
    calls = []
    again = train(config, tmp_path / "r", data=data, callback=lambda s, l: calls.append(s),
                  evaluate_test=False)
    assert calls == [] and again["steps"] == first["steps"] == 2
