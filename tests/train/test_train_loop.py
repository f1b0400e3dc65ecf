"""Training loop pieces: run-folder compatibility, NaN loss, schedules, models."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest
from helpers.train_data import synthetic_data, tiny_config  # noqa: E402  (tests/ on sys.path, conftest.py)

from ntk_bridge.errors import BridgeError  # noqa: E402
from ntk_bridge.train.loop import RunData, learning_rate, new_loop_state, prepare_run_dir, train, update_on_validation  # noqa: E402
from ntk_bridge.train.models import ResNet12, drop_block  # noqa: E402


def test_incompatible_run_folder_is_refused(tmp_path):
    config = tiny_config(max_steps=2)
    train(config, tmp_path / "run", data=synthetic_data(), evaluate_test=False)
    prepare_run_dir(config.replace(max_steps=99, root="/elsewhere"), tmp_path / "run")  # resumable
    with pytest.raises(BridgeError) as err:
        prepare_run_dir(config.replace(lr=0.5), tmp_path / "run")
    text = str(err.value)
    assert "\n" not in text and "different config" in text and "lr: 0.001 there vs 0.5 now" in text
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(BridgeError, match="not empty and has no config.json"):
        prepare_run_dir(config, tmp_path / "junk")


def test_nan_loss_stops_with_step_and_cause(tmp_path):
    d = synthetic_data()
    broken = RunData(d.train, d.val, d.test, d.mean, (0.0,))  # std 0: inputs become inf/NaN
    with pytest.raises(BridgeError) as err:
        train(tiny_config(augment=False), tmp_path / "nan", data=broken)
    text = str(err.value)
    assert "\n" not in text and "at step 1" in text and "likely cause" in text


def test_plateau_schedule_and_early_stop():
    config = tiny_config(schedule="plateau", plateau_patience=2, plateau_factor=0.1, early_stop_patience=3)
    loop = new_loop_state()
    assert update_on_validation(config, loop, 50.0, 10)
    assert not update_on_validation(config, loop, 49.0, 20)
    assert not update_on_validation(config, loop, 50.0, 30)  # equal is not better
    assert loop.lr_scale == pytest.approx(0.1) and loop.stop_reason == ""
    assert learning_rate(config, 30, loop.lr_scale) == pytest.approx(1e-4)
    assert not update_on_validation(config, loop, 10.0, 40)
    assert loop.stop_reason.startswith("early stop") and loop.best_step == 10
    cos = tiny_config(schedule="cosine", max_steps=100)
    assert learning_rate(cos, 0, 1.0) == pytest.approx(1e-3)
    assert learning_rate(cos, 50, 1.0) == pytest.approx(5e-4)
    assert learning_rate(cos, 100, 1.0) == pytest.approx(0.0)


@pytest.mark.slow
def test_resnet12_shape_params_and_batchnorm_modes():
    model = ResNet12()
    x = jnp.zeros((2, 32, 32, 3))
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, x))
    n_params = sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes["params"]))
    # 4 blocks x (3 conv3x3 + 1x1 shortcut + 4 BN): 12.4M with 64-160-320-640 channels
    expected = 0
    cin = 3
    for c in (64, 160, 320, 640):
        expected += 9 * cin * c + 9 * c * c * 2 + cin * c + 4 * 2 * c
        cin = c
    assert n_params == expected and 12.0e6 < n_params < 12.6e6
    small = ResNet12(channels=(4, 4, 8, 8), block_size=2)
    v = small.init({"params": jax.random.PRNGKey(0)}, jnp.ones((3, 16, 16, 3)))
    img = jax.random.normal(jax.random.PRNGKey(1), (3, 16, 16, 3))
    f_eval = small.apply(v, img, train=False)
    f_train, upd = small.apply(v, img, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                               mutable=["batch_stats"])
    assert f_eval.shape == (3, 8) and f_train.shape == (3, 8)
    assert not np.allclose(f_eval, f_train)  # batch statistics vs running averages
    changed = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), v["batch_stats"], upd["batch_stats"])
    assert max(jax.tree_util.tree_leaves(changed)) > 0  # running averages updated in train mode


def test_drop_block_rate_and_blocks():
    x = jnp.ones((200, 10, 10, 4))
    y = np.asarray(drop_block(jax.random.PRNGKey(0), x, 0.1, 3))
    dropped = (y == 0).mean()
    assert 0.08 < dropped < 0.12  # about drop_rate of the units
    assert abs(y.mean() - 1.0) < 0.02  # rescaled: expectation kept
    # dropped units come in blocks: a dropped unit has dropped neighbours
    z = (y[..., 0] == 0)
    isolated = z & ~np.roll(z, 1, 1) & ~np.roll(z, -1, 1) & ~np.roll(z, 1, 2) & ~np.roll(z, -1, 2)
    assert isolated.sum() == 0


@pytest.mark.slow
def test_episodic_algorithm_runs_through_the_same_loop(tmp_path):
    """The loop serves episodic (GBML) algorithms too: episode batches, own test-time head."""
    from ntk_bridge.train.algorithms import known_algorithms
    if "protonet" not in known_algorithms():
        pytest.skip("GBML module not available")
    config = tiny_config(algorithm="protonet", max_steps=2, eval_every=2, test_head="own")
    summary = train(config, tmp_path / "proto", data=synthetic_data())
    assert summary["steps"] == 2
    assert summary["images_seen"] == 2 * config.meta_batch * config.n_way * (config.shots + config.train_query)
    assert summary["test"]["head"] == "own" and summary["test"]["episodes"] == config.test_episodes
    assert 0.0 <= summary["test"]["mean"] <= 100.0


def test_failed_start_leaves_no_folder_or_a_reusable_one(tmp_path):
    d = synthetic_data()
    too_many = tiny_config(n_way=7)  # the val split has 6 classes: caught before anything is written
    with pytest.raises(BridgeError) as err:
        train(too_many, tmp_path / "a", data=d)
    assert "the val split (synthetic/val) has 6 classes but n_way=7" in str(err.value)
    assert not (tmp_path / "a").exists()
    # a start that fails at its first step leaves only config.json: the corrected retry reuses it
    broken = RunData(d.train, d.val, d.test, d.mean, (0.0,))
    with pytest.raises(BridgeError, match="at step 1"):
        train(tiny_config(augment=False), tmp_path / "b", data=broken)
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.name == "config.json") == ["config.json"]
    retry = tiny_config(augment=False, lr=5e-4, max_steps=2)
    summary = train(retry, tmp_path / "b", data=d, evaluate_test=False)
    assert summary["steps"] == 2
    assert json.loads((tmp_path / "b" / "config.json").read_text())["lr"] == 5e-4


@pytest.mark.slow
def test_time_budget_stops_at_a_validation(tmp_path):
    config = tiny_config(max_steps=50, eval_every=2, time_budget_s=1e-9)
    summary = train(config, tmp_path / "t", data=synthetic_data(), evaluate_test=False)
    assert summary["steps"] == 2 and summary["stop_reason"].startswith("time budget")
    assert summary["compile_s"] > 0 and summary["train_s"] > 0
    # the same folder with no budget trains on to max_steps (time_budget_s may change on resume)
    more = train(config.replace(time_budget_s=0.0, max_steps=4), tmp_path / "t", data=synthetic_data(),
                 evaluate_test=False)
    assert more["steps"] == 4 and more["resumed_from"] == 2 and more["stop_reason"] == "reached max_steps=4"
