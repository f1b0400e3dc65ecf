"""The compare command's pure pieces: time to target, the auto target, argument errors."""

import math

import pytest

from ntk_bridge.commands import compare
from ntk_bridge.commands.cli import main
from ntk_bridge.errors import BridgeError
from ntk_bridge.studies import compare as study

CURVE = [{"step": 20, "train_time_s": 5.0, "val_own": 0.40},
         {"step": 40, "train_time_s": 11.0, "val_own": 0.55},
         {"step": 60, "train_time_s": 16.5, "val_own": 0.52},
         {"step": 80, "train_time_s": 22.0, "val_own": 0.61}]


def test_time_to_target_is_first_crossing():
    assert study.time_to_target(CURVE, 0.55) == (11.0, 40)   # >= counts
    assert study.time_to_target(CURVE, 0.56) == (22.0, 80)   # a later dip does not count
    assert study.time_to_target(CURVE, 0.30) == (5.0, 20)
    t, s = study.time_to_target(CURVE, 0.62)
    assert math.isnan(t) and s == -1


def test_auto_target_is_lowest_best_floored():
    assert study.auto_target({"a": 0.6123, "b": 0.4019, "c": 0.9}) == pytest.approx(0.40)
    assert study.auto_target({"a": 0.4050}) == pytest.approx(0.405)
    # every method reaches the auto target by construction
    best = {"x": max(r["val_own"] for r in CURVE)}
    assert not math.isnan(study.time_to_target(CURVE, study.auto_target(best))[0])


def test_gbml_target_is_best_gbml_minus_one_point():
    best = {"mtl": 0.95, "protonet": 0.93, "maml": 0.80, "anil": 0.86, "metaoptnet-ridge": 0.84}
    assert study.gbml_target(best) == pytest.approx(0.85)          # ANIL's 0.86 - 0.01; MTL, ProtoNet not GBML
    assert math.isnan(study.gbml_target({"mtl": 0.9, "protonet": 0.8}))
    assert study.resolve_target("gbml-1", best) == pytest.approx(0.85)
    assert study.resolve_target(None, best) == pytest.approx(0.80)
    assert study.resolve_target(0.5, best) == 0.5


def test_parse_target():
    assert compare.parse_target("auto") is None
    assert compare.parse_target("GBML-1") == "gbml-1"
    assert compare.parse_target("0.9") == 0.9
    for bad in ("90", "0", "x"):
        with pytest.raises(BridgeError, match="--target"):
            compare.parse_target(bad)


def test_cli_rejects_unknown_algorithm_in_one_line(capsys):
    assert main(["compare", "--algorithms", "mtl,reptile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown algorithm(s) reptile")


def test_compare_refuses_unknown_algorithm_keys_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    for config in ('{"mtl": {"lrr": 0.1}}', '{"maml": {"inner_lrr": 5.0}}'):
        assert main(["compare", "--algorithms", "mtl,maml", "--config", config, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "valid keys" in err[0] and not out.exists()
    assert main(["compare", "--algorithms", "maml", "--set", "maml.inner_lrr=1", "--out", str(out)]) == 2
    assert "unknown maml setting 'inner_lrr'" in capsys.readouterr().err and not out.exists()


def _args(**changes):
    import argparse
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    args = parser.parse_args([])
    for k, v in changes.items():
        setattr(args, k, v)
    return args


def test_compare_settings_reach_the_run_configs():
    args = _args(algorithms="mtl,maml,anil", inner_lr=0.2, set=["maml.first_order=true", "lr=0.003"],
                 config='{"anil": {"inner_steps": 2}}')
    settings = compare.algorithm_settings(args, ["mtl", "maml", "anil"])
    maml = compare.run_config(args, "maml", 1, settings["maml"])
    anil = compare.run_config(args, "anil", 5, settings["anil"])
    mtl = compare.run_config(args, "mtl", 5, settings["mtl"])
    assert (maml.algorithm_options.inner_lr, maml.algorithm_options.first_order, maml.lr) == (0.2, True, 0.003)
    assert (anil.algorithm_options.inner_steps, anil.algorithm_options.inner_lr, anil.shots) == (2, 0.2, 5)
    assert mtl.lr == 0.003 and mtl.normalize_features is True and mtl.val_heads == ("own", "logreg")
    args = _args(algorithms="mtl-pooled")
    pooled = compare.run_config(args, "mtl-pooled", 5, compare.algorithm_settings(args, ["mtl-pooled"])["mtl-pooled"])
    assert pooled.normalize_features is False and pooled.algorithm_options.per_task_bn is False



@pytest.mark.skipif(not __import__("ntk_bridge.data", fromlist=["x"]).default_omniglot_root().is_dir(),
                    reason="Omniglot zips not found")
@pytest.mark.slow
def test_compare_and_train_share_one_loop(tmp_path, capsys):
    """compare's run of an algorithm and `train` with that run's config give identical metrics."""
    import json

    import pandas as pd
    out = tmp_path / "cmp"
    args = ["compare", "--algorithms", "protonet", "--channels", "4", "--shots", "1", "--max-steps", "2",
            "--eval-every", "2", "--meta-batch", "1", "--train-query", "2", "--val-episodes", "4",
            "--test-episodes", "4", "--out", str(out), "--no-progress"]
    rc = main(args)
    assert rc == 0, capsys.readouterr().err
    run = out / "runs" / "protonet_1shot"
    rc = main(["train", "--config", str(run / "config.json"), "--run-dir", str(tmp_path / "t")])
    assert rc == 0, capsys.readouterr().err
    strip = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert strip(a) == strip(b) and [r["step"] for r in a] == [2]
    sa = json.loads((run / "summary.json").read_text())
    sb = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert sa["test_heads"] == sb["test_heads"]
    curves = pd.read_csv(out / "curves.csv")
    assert curves["val_own"].tolist() == pytest.approx([a[0]["val_own"] / 100.0], abs=1e-12)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["test_logreg"].tolist() == pytest.approx([sa["test_heads"]["logreg"]["mean"]], abs=1e-9)
    # --from-runs re-makes the same summary from the finished run folder without training ...
    (out / "summary.csv").rename(tmp_path / "first_summary.csv")
    assert main(args + ["--from-runs"]) == 0, capsys.readouterr().err
    assert (out / "summary.csv").read_text() == (tmp_path / "first_summary.csv").read_text()
    assert json.loads((run / "metrics.json").read_text()) == a          # the run was not touched
    # ... and refuses a run folder made with other settings, in one line, writing nothing
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    assert main([x if x != "4" else "5" for x in args[:6]] + args[6:] + ["--from-runs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with other settings (channels)" in err[0]
    assert sorted(p.name for p in out.iterdir()) == before
