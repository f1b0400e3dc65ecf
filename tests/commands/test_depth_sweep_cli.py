"""The main job end to end at a tiny size, and its one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from ntk_bridge.commands.cli import main


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
    assert "rate_d_rel_L>=16" not in summary.columns            # only one depth >= 16
    config = json.loads((out / "config.json").read_text())
    assert config["depths"] == [1, 4, 16] and config["draws"] == 2
    assert fig.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "head-only" in printed and "fitted rates" in printed
    assert "t(0.975, n-1)" in printed and "over n = 2 draws" in printed


def test_depth_sweep_bad_input_is_one_line(tmp_path, capsys):
    rc = main(["depth-sweep", "--depths", "0,2", "--draws", "1", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and ">= 1" in err
    rc = main(["depth-sweep", "--depths", "1", "--draws", "1", "--outer-ridge", "-1", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "outer_ridge" in capsys.readouterr().err


def test_deep_rate_only_when_two_depths_reach_16():
    from ntk_bridge.studies.depth_sweep import summarize

    def frame(depths):                                   # d_rel = 2 L^-1/2, d_tr = L^-1 exactly: known slopes
        return pd.DataFrame([{"pair": "a vs b", "depth": L, "draw": 0, "d_rel": 2 * L ** -0.5, "d_tr": 1.0 / L}
                             for L in depths])

    s = summarize(frame([1, 4, 16]))
    assert "rate_d_rel_L>=16" not in s.columns                  # one deep depth: no column of NaN
    assert s["rate_d_rel"].iloc[0] == pytest.approx(-0.5, abs=1e-12)
    assert s["rate_d_tr"].iloc[0] == pytest.approx(-1.0, abs=1e-12)
    s = summarize(frame([1, 16, 64]))
    assert s["rate_d_rel_L>=16"].iloc[0] == pytest.approx(-0.5, abs=1e-12)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_sweep_killed_after_its_first_file_is_not_read_as_a_finished_run(tmp_path, capsys):
    """SIGKILL once the new run's config.json exists: the previous run stays in place, byte for byte,
    `report` reads that one, refuses the staging folder, and the next run cleans it up."""
    out, fig = tmp_path / "depth", tmp_path / "depth.png"
    small = ["--depths", "1,4", "--train-tasks", "2", "--test-tasks", "2", "--quiet"]
    assert main(["depth-sweep", *small, "--draws", "2", "--out", str(out), "--figure", str(fig)]) == 0
    before, fig_before = _files(out), fig.read_bytes()
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "ntk_bridge.commands.cli", "depth-sweep", "--depths", "1,2,4,8,16,32,64",
                             "--draws", "500", "--quiet", "--out", str(out), "--figure", str(fig), "--overwrite"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not list(tmp_path.glob(".depth.incomplete-*/config.json")):
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before writing its first file"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    (staging,) = tmp_path.glob(".depth.incomplete-*")
    assert sorted(p.name for p in staging.iterdir()) == ["config.json"]      # killed after its first file
    assert _files(out) == before and fig.read_bytes() == fig_before       # the previous run is intact
    capsys.readouterr()
    no = str(tmp_path / "none")
    args = ["report", "--width-sweep", no, "--kernel-fewshot", no, "--compare", no, "--runs", no,
            "--figures", str(tmp_path / "figs")]
    assert main([*args, "--depth-sweep", str(out), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "2 draws" in text and "500 draws" not in text                  # the finished run, not the killed one
    assert main([*args, "--depth-sweep", str(staging), "--out", str(tmp_path / "r2.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfinished result folder" in err[0] and not (tmp_path / "r2.md").exists()
    assert main(["depth-sweep", *small, "--draws", "1", "--out", str(out), "--figure", str(fig), "--overwrite"]) == 0
    assert not staging.exists() and json.loads((out / "config.json").read_text())["draws"] == 1


@pytest.mark.slow
def test_ctrl_c_leaves_the_previous_run_and_no_staging_folder(tmp_path):
    out, fig = tmp_path / "depth", tmp_path / "depth.png"
    assert main(["depth-sweep", "--depths", "1,4", "--draws", "1", "--train-tasks", "2", "--test-tasks", "2",
                 "--quiet", "--out", str(out), "--figure", str(fig)]) == 0
    before, fig_before = _files(out), fig.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "ntk_bridge.commands.cli", "depth-sweep", "--depths", "1,2,4,8,16,32,64",
                             "--draws", "500", "--quiet", "--out", str(out), "--figure", str(fig), "--overwrite"],
                            env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a runner started in the background of a non-interactive shell ignores
                            # SIGINT, and a child inherits that: give the sweep the default, as in a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not list(tmp_path.glob(".depth.incomplete-*/config.json")):
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before writing its first file"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted (SIGINT)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth", "depth.png"]   # staging removed
    assert _files(out) == before and fig.read_bytes() == fig_before
