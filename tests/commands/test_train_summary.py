"""`train`'s summary reports the real wall time from start to end with its parts (issue 34: it
reported about half, the start-up and the test episodes not counted)."""

from __future__ import annotations

import json
import re
import time

import pytest
from helpers.image_folder import write_image_folder

from ntk_bridge.commands.cli import main
from ntk_bridge.commands.train import wall_line


def test_the_wall_line_adds_up():
    summary = {"command_s": 100.0, "distributed_s": 0.0, "startup_s": 20.0, "loop_s": 50.0, "steps_s": 30.0,
               "compile_s_session": 5.0, "test_s": 25.0, "test": {"episodes": 2000}, "wall_s": 50.0}
    line = wall_line(summary)
    assert line.startswith("100.0 s from start to end: start-up 20.0 s (checks, data, model), training loop "
                           "50.0 s (30.0 s in steps, 5.0 s compiling, 15.0 s validating and checkpointing), "
                           "test 25.0 s (2000 episodes per head), writing and the curve 5.0 s")
    resumed = wall_line({**summary, "resumed_from": 10, "wall_s": 80.0, "distributed_s": 1.5})
    assert "joining the distributed run 1.5 s, start-up" in resumed
    assert resumed.endswith("the training loop over every session of this run: 80.0 s")


@pytest.mark.slow
def test_the_printed_wall_time_is_the_measured_one(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["train", "--dataset", "imagefolder", "--root", str(root), "--shots", "1", "--steps", "4",
                 "--set", "n_way=2", "--set", "channels=4", "--set", "train_query=2", "--set", "images_per_class=0", "--set", "val_query=2",
                 "--set", "test_query=2", "--set", "val_episodes=3", "--set", "test_episodes=40",
                 "--set", "eval_every=2", "--set", "checkpoint_every=2", "--run-dir", str(run), "--no-progress"]) == 0
    measured = time.perf_counter() - t0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("wall time"))
    total = float(re.search(r"wall time\s+([\d.]+) s from start to end", line).group(1))
    parts = [float(v) for v in re.findall(r"(?:start-up|training loop|test|writing and the curve) ([\d.]+) s", line)]
    assert len(parts) == 4 and abs(sum(parts) - total) <= 0.25, line          # the parts add up (0.1 s rounding each)
    assert 0.9 * measured - 1.0 <= total <= measured + 0.05, (total, measured)  # the time it took (printed to 0.1 s)
    summary = json.loads((run / "summary.json").read_text())
    inside = summary["startup_s"] + summary["loop_s"] + summary["test_s"]
    assert inside <= summary["session_wall_s"] <= inside + 2.0
    assert summary["test_s"] > 0 and "(40 episodes per head)" in line
