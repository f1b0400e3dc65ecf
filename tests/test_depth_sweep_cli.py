"""The main job end to end at a tiny size, and its one-line errors."""

import json

import pandas as pd

from ntk_bridge.cli import main


def test_depth_sweep_writes_csv_figure_and_summary(tmp_path, capsys):
    out, fig = tmp_path / "out", tmp_path / "fig.png"
    rc = main(["depth-sweep", "--depths", "1,4,16", "--draws", "2", "--train-tasks", "3", "--test-tasks", "2",
               "--out", str(out), "--figure", str(fig), "--quiet"])
    assert rc == 0
    frame = pd.read_csv(out / "depth_sweep.csv")
    assert len(frame) == 3 * 3 * 2                         # depth x pair x draw
    assert set(frame["pair"]) == {"mtl-b vs anil", "mtl-b vs maml", "mtl-a vs anil"}
    assert frame[["d_rel", "d_tr", "err_a", "err_b", "err_head_only"]].notna().all().all()
    summary = pd.read_csv(out / "summary.csv")
    assert {"rate_d_rel", "rate_d_tr"} <= set(summary.columns)
    config = json.loads((out / "config.json").read_text())
    assert config["depths"] == [1, 4, 16] and config["draws"] == 2
    assert fig.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "head-only" in printed and "fitted rates" in printed


def test_depth_sweep_bad_input_is_one_line(tmp_path, capsys):
    rc = main(["depth-sweep", "--depths", "0,2", "--draws", "1", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and ">= 1" in err
    rc = main(["depth-sweep", "--depths", "1", "--draws", "1", "--outer-ridge", "-1", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "outer_ridge" in capsys.readouterr().err
