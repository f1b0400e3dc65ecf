"""Every trainer failure of issue 13 is one `error:` line, exit code 2, no traceback, and leaves
the output folder absent or unchanged."""

from __future__ import annotations

import json

import pytest

from ntk_bridge.commands.cli import main
from ntk_bridge.data import default_omniglot_root

HAVE_OMNIGLOT = default_omniglot_root().is_dir() and any(default_omniglot_root().glob("*.zip"))
TRAIN = ["train", "--dataset", "omniglot", "--shots", "1", "--no-progress"]
COMPARE = ["compare", "--algorithms", "protonet", "--shots", "1", "--no-progress"]

# (argv with {out} = the output folder and {file} = an existing plain file, expected text, needs data)
CASES = [
    (TRAIN + ["--set", "channels=0", "--run-dir", "{out}"], "channels must be >= 1", False),
    (TRAIN + ["--set", "channels=-4", "--run-dir", "{out}"], "channels must be >= 1", False),
    (TRAIN + ["--set", "channels=100000", "--run-dir", "{out}"], "GiB available", False),
    (TRAIN + ["--set", "channels=[8,8]", "--run-dir", "{out}"], "conv4 takes one width", False),
    (["train", "--dataset", "omniglot", "--shots", "0", "--run-dir", "{out}"], "--shots must be >= 1", False),
    (TRAIN + ["--algorithm", "maml", "--set", "inner_lrr=0.4", "--run-dir", "{out}"],
     "not a config field nor a maml option (maml options: inner_lr", False),
    (TRAIN + ["--algorithm", "maml", "--set", 'algorithm_options={"inner_lrr":5}', "--run-dir", "{out}"],
     "unknown maml option(s) inner_lrr; valid keys: inner_lr", False),
    (TRAIN + ["--run-dir", "{file}/sub"], "is a file, so no folder can be made under it", False),
    (TRAIN + ["--run-dir", "/proc/ntk_bridge_x"], "cannot be written", False),
    (TRAIN + ["--rotations", "--dataset", "cifarfs", "--run-dir", "{out}"], "--rotations is an Omniglot option", False),
    (TRAIN + ["--set", "n_way=30", "--set", "channels=4", "--run-dir", "{out}"],
     "the val split (omniglot/val) has 17 classes but n_way=30", True),
    (COMPARE + ["--channels", "0", "--out", "{out}"], "--channels must be >= 1", False),
    (COMPARE + ["--channels", "100000", "--out", "{out}"], "GiB available", False),
    (COMPARE + ["--out", "{file}/sub"], "is a file, so no folder can be made under it", False),
    (COMPARE + ["--out", "{file}"], "is a file, not a folder", False),
    (COMPARE + ["--out", "/proc/ntk_bridge_x"], "cannot be written", False),
    (COMPARE + ["--out", "{out}", "--figure", "{out}/f.xyz"], "unsupported figure format '.xyz'", False),
    (COMPARE + ["--out", "{out}", "--shots", "1,,5"], "without empty items", False),
    (COMPARE + ["--out", "{out}", "--config", '{"protonet": {"lrr": 0.1}}'], "unknown protonet setting 'lrr'", False),
    (COMPARE + ["--out", "{out}", "--inner-lr", "0.4"], "--inner-lr applies to maml and anil", False),
    (COMPARE + ["--out", "{out}", "--n-way", "30", "--channels", "4"], "the val split (omniglot/val) has 17 classes", True),
]


def snapshot(path):
    """Every file under ``path`` with its bytes (None if the path does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv,message,needs_data", CASES, ids=[" ".join(c[0][:1] + c[0][-4:]) for c in CASES])
def test_one_error_line_and_nothing_written(tmp_path, capsys, argv, message, needs_data):
    if needs_data and not HAVE_OMNIGLOT:
        pytest.skip("Omniglot zips not found")
    out, file = tmp_path / "out", tmp_path / "file"
    file.write_text("x")
    before = {p: snapshot(p) for p in (out, file)}
    rc = main([a.replace("{out}", str(out)).replace("{file}", str(file)) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert {p: snapshot(p) for p in (out, file)} == before


def test_evaluate_on_a_failed_start_folder(tmp_path, capsys):
    """A folder holding only config.json (what a failed start used to leave) is refused in one
    line, unchanged."""
    from ntk_bridge.train.config import TrainConfig
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(channels=4).to_dict()))
    before = snapshot(run)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no checkpoint" in err[0] and snapshot(run) == before


def test_cost_warning_before_long_evaluations():
    from ntk_bridge.train.config import TrainConfig
    from ntk_bridge.train.cost import evaluation_warning
    big = TrainConfig(n_way=100, val_episodes=300, val_query=15)
    text = evaluation_warning(big)
    assert text.startswith("warning: each validation classifies 450,000 query images (300 100-way")
    assert "\n" not in text
    assert evaluation_warning(TrainConfig(val_episodes=300, test_episodes=2000, test_query=50)) == ""  # paper protocol


def test_evaluate_other_n_way_needs_a_frozen_feature_head(tmp_path, capsys):
    from ntk_bridge.train.config import TrainConfig
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(algorithm="maml", channels=4).to_dict()))
    before = snapshot(run)
    assert main(["evaluate", str(run), "--n-way", "20", "--head", "own"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "own head of maml is built for 5-way episodes" in err[0]
    assert snapshot(run) == before


def test_rotations_flag_sets_the_data_option():
    import argparse

    from ntk_bridge.commands import train as cmd
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    cfg = cmd.build_config(parser.parse_args(["--dataset", "omniglot", "--shots", "1", "--rotations"]))
    assert cfg.dataset_options == {"image_size": 28, "rotations": True}
