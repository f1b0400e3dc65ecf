"""`ntk-bridge train` / `evaluate` end to end on real Omniglot (tiny Conv-4), and CLI errors."""

from __future__ import annotations

import json

import pytest

from ntk_bridge.commands.cli import main
from ntk_bridge.data import default_omniglot_root

HAVE_OMNIGLOT = default_omniglot_root().is_dir() and any(default_omniglot_root().glob("*.zip"))


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.skipif(not HAVE_OMNIGLOT, reason="Omniglot zips not found")
@pytest.mark.slow
def test_train_then_evaluate_on_omniglot(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "omniglot", "--shots", "1", "--steps", "2", "--meta-batch", "1",
            "--set", "channels=4", "--set", "eval_every=2", "--set", "val_episodes=10",
            "--set", "test_episodes=20", "--no-progress", "--run-dir", str(run)]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    assert "test               " in out and "(5-way 1-shot, omniglot/test, 20 episodes, 15 queries/class" in out
    assert "95% CI = t(0.975, episodes-1)*std/sqrt(episodes)" in out
    for name in ("config.json", "metrics.csv", "metrics.json", "summary.json", "curve.png"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    per_class = json.loads((run / "config.json").read_text())["algorithm_options"]["images_per_class"]
    assert per_class == 10                         # the faithful MTL: images per class apart from the shots
    assert summary["steps"] == 2 and summary["test"]["episodes"] == 20 and summary["images_seen"] == 2 * 5 * per_class
    assert 0 <= summary["test"]["mean"] <= 100 and summary["wall_s"] > 0 and summary["images_per_s"] > 0
    assert json.loads((run / "config.json").read_text())["channels"] == 4

    rc, out, err = run_cli(capsys, "evaluate", str(run), "--episodes", "30", "--head", "proto",
                           "--queries", "5")
    assert rc == 0, err
    assert "30 episodes, 5 queries/class, head proto" in out and "1-shot" in out
    saved = json.loads((run / "eval_test_proto_1shot_30ep_best.json").read_text())
    assert saved["episodes"] == 30 and saved["query"] == 5

    # 20-way one-shot evaluation of the 5-way run (the small test split has 62 classes)
    rc, out, err = run_cli(capsys, "evaluate", str(run), "--episodes", "6", "--n-way", "20", "--shots", "1",
                           "--queries", "2", "--head", "logreg")
    assert rc == 0, err
    assert "(20-way 1-shot, omniglot/test, 6 episodes, 2 queries/class" in out
    saved = json.loads((run / "eval_test_logreg_20way_1shot_6ep_best.json").read_text())
    assert saved["n_way"] == 20 and 0 <= saved["mean"] <= 100

    # resumable change (more steps): the run continues from its checkpoint and says so
    rc, out, err = run_cli(capsys, *[a if a != "2" or i != argv.index("--steps") + 1 else "3"
                                     for i, a in enumerate(argv)])
    assert rc == 0, err
    assert "3 (reached max_steps=3; resumed from step 2)" in out

    # same folder, incompatible config: refused in one line
    rc, out, err = run_cli(capsys, *[a if a != "channels=4" else "channels=8" for a in argv])
    assert rc == 2 and err.count("\n") == 1 and "different config (channels: 4 there vs 8 now)" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataset", "imagenet", "--shots", "5"], "error: unknown dataset 'imagenet'"),
    (["train", "--dataset", "omniglot", "--shots", "5", "--algorithm", "reptile"], "error: unknown algorithm 'reptile'"),
    (["train", "--dataset", "omniglot", "--shots", "5", "--set", "lr=fast"], "error: config field 'lr' must be a number"),
    (["train", "--dataset", "omniglot", "--shots", "5", "--set", "meta_batch=2.5"], "error: config field 'meta_batch' must be an integer"),
    (["train", "--dataset", "omniglot", "--shots", "3"], "neither a file nor a packaged setting"),
    (["train"], "error: say what to train"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
    rc, out, err = run_cli(capsys, *argv, "--run-dir", str(tmp_path / "r"))
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing written


def test_evaluate_needs_a_run_folder(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert rc == 2 and "is not a run folder" in err and err.count("\n") == 1
