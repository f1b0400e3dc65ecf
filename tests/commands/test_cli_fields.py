"""Flags derived from the config dataclasses: with no flags each command's config is its dataclass default."""

import argparse
import dataclasses

import pytest

from ntk_bridge.commands import _fields, depth_sweep, kernel_fewshot, regime_map, width_sweep


def _parse(module, argv=()):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser, parser.parse_args(list(argv))


def test_no_flags_give_the_dataclass_defaults():
    from ntk_bridge.finite.sweep import WidthSweepConfig
    from ntk_bridge.studies.depth_sweep import DepthStudyConfig
    from ntk_bridge.studies.regime_map import RegimeMapConfig

    assert width_sweep.config_from_args(_parse(width_sweep)[1]) == WidthSweepConfig()
    assert regime_map.config_from_args(_parse(regime_map)[1]) == RegimeMapConfig()
    study = DepthStudyConfig()
    assert depth_sweep.config_from_args(_parse(depth_sweep)[1]) == dataclasses.replace(
        study, net=dataclasses.replace(study.net, depth=max(study.depths)))
    kf = kernel_fewshot.command_defaults()
    assert kernel_fewshot.config_from_args(_parse(kernel_fewshot)[1]) == dataclasses.replace(
        kf, net=dataclasses.replace(kf.net, depth=max(kf.depths)))


def test_help_states_the_dataclass_default_and_flags_reach_nested_fields():
    from ntk_bridge.finite.sweep import WidthSweepConfig

    parser, _ = _parse(width_sweep)
    text = parser.format_help()
    assert f"(default {WidthSweepConfig().seeds})" in text and "--train-tasks TRAIN_TASKS" in text
    config = width_sweep.config_from_args(parser.parse_args(["--depth", "3", "--train-tasks", "2", "--seeds", "1"]))
    assert (config.net.depth, config.family.n_train_tasks, config.seeds) == (3, 2, 1)
    assert config.family.n_test_tasks == WidthSweepConfig().family.n_test_tasks      # the rest untouched


def test_conv_tile_is_auto_by_default_a_number_on_request_and_refuses_other_words(capsys):
    parser, args = _parse(kernel_fewshot)
    assert kernel_fewshot.config_from_args(args).conv_tile is None                # auto: the engine's default
    assert "default auto" in " ".join(parser.format_help().split())
    assert kernel_fewshot.config_from_args(parser.parse_args(["--conv-tile", "8"])).conv_tile == 8
    assert kernel_fewshot.config_from_args(parser.parse_args(["--conv-tile", "AUTO"])).conv_tile is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--conv-tile", "many"])
    assert "expected an integer or 'auto'" in capsys.readouterr().err


@dataclasses.dataclass(frozen=True)
class _Inner:
    a: int = 1
    b: float = 0.5

    def __post_init__(self):
        if self.a > 10 * self.b:          # a check across two fields: both must arrive together
            raise ValueError("a too large for b")


@dataclasses.dataclass(frozen=True)
class _Outer:
    sizes: tuple[int, ...] = (1, 2)
    inner: _Inner = _Inner()


def test_build_sets_a_nested_config_in_one_step():
    flags = (_fields.Flag("sizes", "sizes"), _fields.Flag("inner.a", name="--a"), _fields.Flag("inner.b", name="--b"))
    parser = argparse.ArgumentParser()
    _fields.add_flags(parser, _Outer(), flags)
    # a = 30 is valid only together with b = 4: one replace of the nested config, not one per field
    config = _fields.build(_Outer(), parser.parse_args(["--a", "30", "--b", "4", "--sizes", "3,4"]), flags)
    assert config == _Outer(sizes=(3, 4), inner=_Inner(a=30, b=4.0))
    with pytest.raises(ValueError, match="one nested config level"):
        _fields.build(_Outer(), argparse.Namespace(inner__x__y=1), (_fields.Flag("inner.x.y"),))
