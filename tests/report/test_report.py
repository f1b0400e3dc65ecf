"""`ntk-bridge report` end to end on outputs that CI-sized runs of the other commands produce."""

import json

import pandas as pd
import pytest
from helpers.omniglot_zips import write_tiny_omniglot  # noqa: E402  (tests/ is on sys.path)

from ntk_bridge.commands.cli import main


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Really run depth-sweep, width-sweep, kernel-fewshot, compare and train at tiny sizes."""
    root = tmp_path_factory.mktemp("results")
    figs = root / "figs"
    data = str(write_tiny_omniglot(root / "omniglot"))     # the pipeline, not the data, is under test
    assert main(["depth-sweep", "--depths", "1,4,16", "--draws", "2", "--train-tasks", "3", "--test-tasks", "2",
                 "--out", str(root / "depth"), "--figure", str(figs / "depth.png"), "--quiet"]) == 0
    assert main(["width-sweep", "--widths", "16,32", "--seeds", "2", "--methods", "mtl-b,anil,mtl-a,head-only",
                 "--train-tasks", "2", "--test-tasks", "2", "--n-query", "3", "--n-support", "3",
                 "--outer-time", "1", "--out", str(root / "width"), "--figure", str(figs / "width.png"),
                 "--quiet"]) == 0
    assert main(["kernel-fewshot", "--root", data, "--shots", "1", "--train-episodes", "2", "--test-episodes", "3",
                 "--depths", "1,4", "--conv-depths", "none", "--out", str(root / "kernel"),
                 "--figure", str(figs / "kernel.png"), "--synthetic", str(root / "depth" / "depth_sweep.csv"),
                 "--quiet"]) == 0
    # the same predictors on validation episodes: the report chooses each kernel predictor's depth on them
    assert main(["kernel-fewshot", "--root", data, "--shots", "1", "--train-episodes", "2", "--test-episodes", "3",
                 "--test-split", "val", "--depths", "1,4", "--conv-depths", "none", "--out", str(root / "kernel_val"),
                 "--figure", str(figs / "kernel_val.png"), "--synthetic", str(root / "depth" / "depth_sweep.csv"),
                 "--quiet"]) == 0
    _train_commands(root, figs, data)   # float32: the kernel commands above asked for float64 only inside them
    return root


def _train_commands(root, figs, data):
    cfg = root / "algo.json"
    cfg.write_text(json.dumps({"anil": {"first_order": True, "inner_steps": 1, "eval_inner_steps": 1}}))
    assert main(["compare", "--root", data, "--algorithms", "mtl,anil", "--shots", "1", "--channels", "4", "--max-steps", "2",
                 "--eval-every", "1", "--val-episodes", "2", "--val-query", "2", "--test-episodes", "3",
                 "--test-query", "2", "--meta-batch", "1", "--train-query", "2", "--time-budget", "30",
                 "--config", str(cfg), "--out", str(root / "compare"), "--figure", str(figs / "compare.png"),
                 "--no-progress"]) == 0
    assert main(["train", "--dataset", "omniglot", "--root", data, "--shots", "1", "--steps", "2", "--set", "channels=4",
                 "--set", "test_episodes=3", "--set", "val_episodes=2", "--set", "eval_every=1",
                 "--set", "checkpoint_every=2", "--set", "test_query=2", "--set", "val_query=2",
                 "--set", "train_query=2", "--run-dir", str(root / "runs" / "tiny_mtl"), "--no-progress"]) == 0


def _report(root, out, figs, *extra):
    return main(["report", "--depth-sweep", str(root / "depth"), "--width-sweep", str(root / "width"),
                 "--kernel-fewshot", str(root / "kernel"), "--compare", str(root / "compare"),
                 "--runs", str(root / "runs"), "--out", str(out), "--figures", str(figs), *extra])


@pytest.mark.slow
def test_report_end_to_end(outputs, tmp_path, capsys):
    out, figs = tmp_path / "report.md", tmp_path / "figures"
    assert _report(outputs, out, figs) == 0
    text = out.read_text()
    assert "**not run**" not in text
    for heading in ("## 1. Theory claims", "## 2. MTL-GBML distance vs depth", "## 3. Finite width",
                    "## 4. Kernel-regime accuracy", "## 5. MTL vs GBML", "## 6. The paper's reference numbers"):
        assert heading in text
    # numbers come from the files: the depth sweep's fitted rate, a kernel accuracy cell, compare and train accuracies
    summary = pd.read_csv(outputs / "depth" / "summary.csv")
    r = summary[summary["pair"] == "mtl-b vs anil"].iloc[0]
    assert f"| mtl-b vs anil | {r.d_rel_lo:.4g} (L=1) |" in text and f"{r.rate_d_rel:+.3f}" in text
    acc = pd.read_csv(outputs / "kernel" / "accuracy.csv")
    a = acc[(acc["method"] == "head-only") & (acc["depth"] == 4)].iloc[0]
    assert f"{a.acc_mean:.1f} +- {a.acc_ci95:.1f}" in text
    assert "(3 test episodes x 5 queries/class, 2 training episodes)" in text
    assert "chosen on **validation episodes**" in text and "| fixed: smallest depth |" not in text
    cmp_ = pd.read_csv(outputs / "compare" / "summary.csv")
    m = cmp_[cmp_["algorithm"] == "mtl"].iloc[0]
    assert f"{m.test_own:.2f} +- {m.test_own_ci:.2f}" in text
    run = json.loads((outputs / "runs" / "tiny_mtl" / "summary.json").read_text())["test"]
    assert f"{run['mean']:.2f} +- {run['ci95']:.2f}" in text
    assert "3 episodes x 2 queries/class" in text
    # MTL-A = head-only is checked on both the synthetic and the real tasks and holds exactly
    claim = next(line for line in text.splitlines() if line.startswith("| MTL with independent heads"))
    assert claim.rstrip().endswith("| holds |") and "Omniglot" in claim and "synthetic" in claim
    # the paper's table with its protocol, and our row (no local mini-ImageNet etc.)
    assert "| MTL (the paper) | ResNet-12 | 59.84 | 77.72 |" in text and "2,000 test episodes x 50 queries/class" in text
    assert "| ours (trained) | - | not run (no data here)" in text
    # every markdown table row has as many cells as its header
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            n = lines[i - 1].count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].count("|") == n, lines[j]
                j += 1
    names = sorted(p.name for p in figs.iterdir())
    assert names == ["report_accuracy.png", "report_distance_depth.png", "report_width.png"]
    assert all((figs / n).stat().st_size > 10_000 for n in names)
    assert "wrote" in capsys.readouterr().out


def test_report_lists_missing_inputs_with_their_commands(tmp_path, capsys):
    out = tmp_path / "r.md"
    rc = main(["report", "--depth-sweep", str(tmp_path / "no"), "--width-sweep", str(tmp_path / "no"),
               "--kernel-fewshot", str(tmp_path / "no"), "--compare", str(tmp_path / "no"),
               "--runs", str(tmp_path / "no"), "--out", str(out), "--figures", str(tmp_path / "f")])
    assert rc == 0
    text = out.read_text()
    assert text.count("**not run**") == 6          # the kernel run's validation episodes too
    for cmd in ("ntk-bridge depth-sweep", "ntk-bridge width-sweep", "ntk-bridge kernel-fewshot",
                "ntk-bridge compare", "ntk-bridge train"):
        assert f"`{cmd}" in text
    assert "| MTL (the paper) | ResNet-12 |" in text
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())
    printed = capsys.readouterr().out
    assert "6 inputs not run" in printed


def test_report_refuses_a_half_written_file_by_name(outputs, tmp_path, capsys):
    import shutil

    broken = tmp_path / "kernel"
    shutil.copytree(outputs / "kernel", broken)
    (broken / "accuracy.csv").write_text("")                 # e.g. a run killed mid-write by an older version
    out = tmp_path / "r.md"
    rc = main(["report", "--depth-sweep", str(outputs / "depth"), "--width-sweep", str(outputs / "width"),
               "--kernel-fewshot", str(broken), "--compare", str(outputs / "compare"),
               "--runs", str(outputs / "runs"), "--out", str(out), "--figures", str(tmp_path / "f")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(broken / "accuracy.csv") in err[0]
    assert "ntk-bridge kernel-fewshot" in err[0]              # the fix: the command that rewrites it
    assert not out.exists() and not (tmp_path / "f").exists()


def test_report_refuses_a_file_lacking_a_declared_column(outputs, tmp_path, capsys):
    """The columns the report reads are declared by the producer (ntk_bridge.report.schemas); a file
    without one (another version's output) is refused by name and column, writing nothing."""
    import shutil

    from ntk_bridge.report.schemas import COMPARE

    broken = tmp_path / "compare"
    shutil.copytree(outputs / "compare", broken)
    summary = pd.read_csv(broken / COMPARE.file("summary")).rename(columns={"test_own": "test_acc"})
    summary.to_csv(broken / COMPARE.file("summary"), index=False)
    out = tmp_path / "r.md"
    rc = main(["report", "--depth-sweep", str(outputs / "depth"), "--width-sweep", str(outputs / "width"),
               "--kernel-fewshot", str(outputs / "kernel"), "--compare", str(broken),
               "--runs", str(outputs / "runs"), "--out", str(out), "--figures", str(tmp_path / "f")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken / "summary.csv") in err[0] and "lacks column(s) test_own" in err[0]
    assert not out.exists()


def test_report_reads_run_folders_given_as_symlinks(outputs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "linked_mtl").symlink_to(outputs / "runs" / "tiny_mtl")
    (runs / "again").symlink_to(runs)                        # a link cycle is walked once
    out = tmp_path / "r.md"
    assert main(["report", "--depth-sweep", str(tmp_path / "no"), "--width-sweep", str(tmp_path / "no"),
                 "--kernel-fewshot", str(tmp_path / "no"), "--compare", str(tmp_path / "no"),
                 "--runs", str(runs), "--out", str(out), "--figures", str(tmp_path / "f")]) == 0
    text = out.read_text()
    run = json.loads((outputs / "runs" / "tiny_mtl" / "summary.json").read_text())["test"]
    assert f"| {runs / 'linked_mtl'} |" in text and f"{run['mean']:.2f} +- {run['ci95']:.2f}" in text
    assert text.count(f"{run['mean']:.2f} +- {run['ci95']:.2f} | 3 episodes") == 1


def test_report_of_a_one_draw_sweep_prints_no_interval_and_no_nan_slope(tmp_path, capsys):
    depth = tmp_path / "depth"
    assert main(["depth-sweep", "--depths", "1,4", "--draws", "1", "--train-tasks", "3", "--test-tasks", "2",
                 "--out", str(depth), "--figure", str(tmp_path / "d.png"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "(n=1, no interval)" in printed and "+- 0.000" not in printed
    header = next(line for line in printed.splitlines() if line.strip().startswith("pair"))
    assert "rate_d_rel " in header + " " and "L>=16" not in header      # no column of NaN ...
    assert "(no rate_d_rel_L>=16: fewer than two depths are >= 16)" in printed   # ... but a note why
    out = tmp_path / "r.md"
    assert main(["report", "--depth-sweep", str(depth), "--width-sweep", str(tmp_path / "no"),
                 "--kernel-fewshot", str(tmp_path / "no"), "--compare", str(tmp_path / "no"),
                 "--runs", str(tmp_path / "no"), "--out", str(out), "--figures", str(tmp_path / "f")]) == 0
    text = out.read_text()
    errors = pd.read_csv(depth / "errors.csv")
    assert errors["err_ci95"].isna().all() and (errors["draws"] == 1).all()
    assert "(n=1, no interval)" in text and "+- 0.000" not in text and "nan" not in text.lower()
    assert "slope (L>=16)" not in text and "fewer than two depths >= 16" in text


def test_an_incomplete_width_sweep_is_listed_not_read(tmp_path):
    """A width-sweep folder whose run.json says complete: false is not read as a finished run."""
    import json
    import shutil
    from pathlib import Path

    from ntk_bridge.report.loading import load_width

    src = Path(__file__).resolve().parents[2] / "experiments/results/width_sweep/depth8"
    if not (src / "run.json").exists():
        pytest.skip("committed depth-8 width sweep not present")
    dst = tmp_path / "ws"
    shutil.copytree(src, dst)
    assert load_width(dst)[0].data is not None
    run = json.loads((dst / "run.json").read_text())
    (dst / "run.json").write_text(json.dumps({**run, "complete": False}))
    (got,) = load_width(dst)
    assert got.data is None and "not complete" in got.missing
