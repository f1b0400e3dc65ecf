"""Typed per-algorithm options: defaults per data set, unknown keys refused, values honoured."""

from __future__ import annotations

import argparse
import json

import pytest

from ntk_bridge.errors import BridgeError
from ntk_bridge.train.config import TrainConfig, from_dict
from ntk_bridge.train.options import MAMLOptions, MTLOptions, NoOptions, RidgeOptions, default_options


def test_defaults_per_dataset_are_resolved_and_saved():
    omni = TrainConfig(dataset="omniglot", algorithm="maml")
    assert omni.algorithm_options == MAMLOptions(inner_lr=0.4, inner_steps=1, eval_inner_steps=1)
    mini = TrainConfig(dataset="miniimagenet", algorithm="anil")
    assert mini.algorithm_options == MAMLOptions(inner_lr=0.01, inner_steps=5, eval_inner_steps=10)
    assert TrainConfig(algorithm="metaoptnet-ridge").algorithm_options == RidgeOptions(1.0, 10.0)
    assert TrainConfig(algorithm="protonet").algorithm_options == NoOptions()
    assert TrainConfig(algorithm="mtl").algorithm_options == MTLOptions(True, True, 40000, 10)
    assert TrainConfig(algorithm="mtl-pooled").algorithm_options == MTLOptions(False, False, 0, 0)
    # the saved config holds every option, so a later change of defaults does not change it
    saved = omni.to_dict()["algorithm_options"]
    assert saved == {"inner_lr": 0.4, "inner_steps": 1, "eval_inner_steps": 1, "first_order": False,
                     "remat": False}
    assert from_dict(json.loads(json.dumps(omni.to_dict()))) == omni
    # a partial dict keeps the other defaults; an integer is a number
    part = from_dict({"algorithm": "maml", "algorithm_options": {"inner_lr": 1}})
    assert part.algorithm_options == MAMLOptions(inner_lr=1.0, inner_steps=1, eval_inner_steps=1)
    assert default_options("maml", "cifarfs").inner_lr == 0.01


@pytest.mark.parametrize("algorithm,options,message", [
    ("maml", {"inner_lrr": 5.0}, "unknown maml option(s) inner_lrr; valid keys: inner_lr, inner_steps, "
                                 "eval_inner_steps, first_order, remat"),
    ("protonet", {"inner_lr": 0.1}, "unknown protonet option(s) inner_lr; valid keys: none"),
    ("mtl", {"lr": 0.1}, "unknown mtl option(s) lr"),
    ("maml", {"inner_steps": 1.5}, "option 'inner_steps' must be an integer"),
    ("maml", {"first_order": 1}, "option 'first_order' must be true/false"),
    ("maml", {"inner_lr": -0.1}, "option 'inner_lr' must be > 0"),
    ("metaoptnet-ridge", {"init_lambda": "big"}, "option 'init_lambda' must be a finite number"),
    ("maml", [1, 2], "algorithm_options must be a JSON object"),
])
def test_bad_options_are_one_line(algorithm, options, message):
    with pytest.raises(BridgeError) as err:
        from_dict({"algorithm": algorithm, "algorithm_options": options})
    assert message in str(err.value) and "\n" not in str(err.value)


def _train_args(*extra):
    from ntk_bridge.commands import train as cmd
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return cmd.build_config(parser.parse_args(["--dataset", "omniglot", "--shots", "1", *extra]))


def test_train_flags_reach_the_options():
    cfg = _train_args("--algorithm", "maml", "--set", "inner_lr=0.5")
    assert cfg.algorithm_options.inner_lr == 0.5 and cfg.algorithm_options.inner_steps == 1
    cfg = _train_args("--algorithm", "maml", "--set", 'algorithm_options={"inner_lr":5.0,"inner_steps":2}',
                      "--set", "first_order=true")
    assert cfg.algorithm_options == MAMLOptions(inner_lr=5.0, inner_steps=2, eval_inner_steps=1,
                                                first_order=True)
    with pytest.raises(BridgeError, match="not a config field nor a maml option"):
        _train_args("--algorithm", "maml", "--set", "inner_lrr=0.4")
    with pytest.raises(BridgeError, match="unknown mtl option"):
        _train_args("--set", 'algorithm_options={"inner_lr":0.4}')


def test_gbml_reads_the_typed_options():
    from ntk_bridge.train.gbml import gbml_config_from_run
    g = gbml_config_from_run(from_dict({"algorithm": "maml", "n_way": 3, "lr": 0.002,
                                        "algorithm_options": {"inner_lr": 5.0, "remat": True}}))
    assert (g.n_way, g.lr, g.maml.inner_lr, g.maml.inner_steps, g.maml.eval_inner_steps, g.maml.remat) == (3, 0.002, 5.0, 1, 1, True)
    g = gbml_config_from_run(from_dict({"algorithm": "metaoptnet-ridge",
                                        "algorithm_options": {"init_lambda": 0.5, "init_scale": 3}}))
    assert (g.ridge.init_lambda, g.ridge.init_scale) == (0.5, 3.0)


@pytest.mark.slow
def test_maml_inner_lr_changes_the_run_and_is_checked_on_resume(tmp_path):
    """The silent trap of issue 12: two runs that differ only in MAML's inner_lr must differ."""
    from helpers.train_data import synthetic_data, tiny_config

    from ntk_bridge.train.loop import prepare_run_dir, train

    data = synthetic_data()
    runs = {}
    for lr in (0.4, 0.05):
        cfg = tiny_config(algorithm="maml", algorithm_options={"inner_lr": lr}, max_steps=1,
                          eval_every=1, checkpoint_every=1, val_episodes=4)
        train(cfg, tmp_path / str(lr), data=data, evaluate_test=False)
        runs[lr] = json.loads((tmp_path / str(lr) / "metrics.json").read_text())[0]
        assert json.loads((tmp_path / str(lr) / "config.json").read_text())["algorithm_options"]["inner_lr"] == lr
    # the step-1 loss is the query loss after one inner step of size inner_lr from the same
    # initial weights: a different step size gives a different loss
    assert abs(runs[0.4]["train_loss"] - runs[0.05]["train_loss"]) > 1e-4
    with pytest.raises(BridgeError, match="algorithm_options"):
        prepare_run_dir(cfg.replace(algorithm_options={"inner_lr": 0.4}), tmp_path / "0.05")
