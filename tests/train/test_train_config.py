"""Configs, run folders and bad input: each mistake gives one clear line."""

from __future__ import annotations

import json

import pytest

from ntk_bridge.errors import BridgeError
from ntk_bridge.train.config import TrainConfig, from_dict, load_config, packaged_configs

CPU_RECIPES = ("omniglot", "imagefolder")      # imagefolder: a user's own root/<class>/*.png
PAPER = [f"{d}_{k}shot" for d in ("cifarfs", "fc100", "miniimagenet", "tieredimagenet") + CPU_RECIPES
         for k in (1, 5)]


def test_every_paper_setting_is_packaged_and_valid():
    assert sorted(PAPER) == packaged_configs()
    for name in PAPER:
        cfg = load_config(name)
        dataset, shots = name.rsplit("_", 1)
        assert cfg.dataset == dataset and f"{cfg.shots}shot" == shots
        assert cfg.algorithm == "mtl" and cfg.n_way == 5 and cfg.logreg_c == 3.0
        assert cfg.test_episodes == 2000
        notes = {"omniglot": "the paper's MTL training rules carried to Omniglot", "imagefolder": "CPU recipe"}
        assert cfg.note.startswith(notes.get(dataset, "the paper's MTL as its authors train it"))
        if dataset not in CPU_RECIPES:
            assert cfg.backbone == "resnet12" and cfg.optimizer == "radam" and cfg.lr == 1e-3
            assert cfg.schedule == "plateau" and cfg.plateau_factor == 0.1 and cfg.plateau_patience == 5
            assert cfg.block_size == (2 if dataset in ("cifarfs", "fc100") else 5)
            assert cfg.pad == (4 if dataset in ("cifarfs", "fc100") else 8)
            assert cfg.normalize_features == (dataset != "fc100")
            assert cfg.test_query == 50
        else:
            assert cfg.backbone == "conv4"


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_wrong_types_and_unknown_fields():
    with pytest.raises(BridgeError) as err:
        from_dict({"lr": "fast"})
    assert "'lr' must be a number" in one_line(err)
    with pytest.raises(BridgeError) as err:
        from_dict({"max_steps": 10.5})
    assert "'max_steps' must be an integer" in one_line(err)
    with pytest.raises(BridgeError) as err:
        from_dict({"augment": "yes"})
    assert "'augment' must be true/false" in one_line(err)
    with pytest.raises(BridgeError) as err:
        from_dict({"learning_rate": 0.1})
    assert "unknown config field(s) learning_rate" in one_line(err)
    assert from_dict({"lr": 1}).lr == 1.0  # an integer is a number


def test_unknown_dataset_backbone_algorithm():
    with pytest.raises(BridgeError) as err:
        TrainConfig(dataset="imagenet21k")
    assert "unknown dataset 'imagenet21k'" in one_line(err)
    with pytest.raises(BridgeError) as err:
        TrainConfig(backbone="vit")
    assert "unknown backbone 'vit'" in one_line(err)
    from ntk_bridge.train.algorithms import get_algorithm
    with pytest.raises(BridgeError) as err:
        get_algorithm("reptile")
    assert "unknown algorithm 'reptile'; known:" in one_line(err) and "mtl" in str(err.value)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": 0.1,}')
    with pytest.raises(BridgeError) as err:
        load_config(bad)
    assert "not valid JSON" in one_line(err)
    bad.write_text(json.dumps({"meta_batch": "4"}))
    with pytest.raises(BridgeError) as err:
        load_config(bad)
    assert "'meta_batch' must be an integer" in one_line(err) and str(bad) in str(err.value)
    with pytest.raises(BridgeError) as err:
        load_config("nosuch_9shot")
    assert "packaged:" in one_line(err)
