"""The feature-map study (ntk_bridge.studies.feature_map, `ntk-bridge feature-map`): representation scores,
agreement with the closed forms in NTK parameterisation at large width, the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ntk_bridge.closed_form.distances import d_rel
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.commands.cli import main
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.studies import feature_map as fm

SMALL = FamilyConfig(family="subspace", d=8, n_train_tasks=3, n_test_tasks=3, n_query=4, n_support=4, rank=2)


def test_alignment_is_one_for_a_network_given_the_true_subspace():
    """A network whose first-layer update is built inside span P (W_1 = W_1(0) + P^T A) scores 1,
    for every draw; one whose update avoids span P scores 0."""
    from ntk_bridge.finite.training import init_net

    for seed in range(5):
        tasks = make_tasks(FamilyConfig(family="quadratic", d=16, rank=3), seed)
        proj = tasks.meta["subspace"]
        net = init_net(NetSpec(), 256, seed, 16, 1)
        w0 = np.asarray(net.params0[0][0])
        a = np.random.default_rng(seed).standard_normal((3, 256))
        assert fm.alignment((w0 + proj.T @ a) - w0, proj) == pytest.approx(1.0, abs=1e-10)
        away = (np.eye(16) - proj.T @ proj) @ np.random.default_rng(seed).standard_normal((16, 256))
        assert fm.alignment(away, proj) == pytest.approx(0.0, abs=1e-10)
    assert np.isnan(fm.alignment(np.zeros((16, 4)), proj))


def test_alignment_of_random_updates_is_rank_over_d():
    """E ||P U||^2 / r = r / d for a uniformly random r-dim U: the mean of 400 draws is within
    4 standard errors of 3/16."""
    rng = np.random.default_rng(1)
    proj = np.linalg.qr(rng.standard_normal((16, 3)))[0].T
    scores = np.array([fm.alignment(rng.standard_normal((16, 3)), proj) for _ in range(400)])
    assert abs(scores.mean() - 3 / 16) < 4 * scores.std() / np.sqrt(400)
    u = fm.top_subspace(rng.standard_normal((16, 40)), 3)
    v = fm.top_subspace(rng.standard_normal((16, 40)), 3)
    assert fm.subspace_overlap(u, u) == pytest.approx(1.0)
    assert fm.subspace_overlap(u, v) == pytest.approx(fm.subspace_overlap(v, u))


@pytest.mark.slow
def test_ntk_parameterisation_at_large_width_agrees_with_the_closed_forms():
    """The study's code path (train_unit, its schedule, second-order MAML) in NTK parameterisation
    at width 4096 vs the closed forms of ntk_bridge.finite.closed with the network's own f_0: the
    width sweep measured rel_error 0.03-0.05 at width 4096 (experiments/results/width_sweep,
    ~C width^-1/2 with C ~ 3); 0.15 is 3x that. muP at the same width is not in the kernel
    regime: its distance to the same closed forms is several times larger."""
    from ntk_bridge.finite.closed import closed_form, infinite_gram
    from ntk_bridge.finite.training import init_net, initial_outputs

    config = fm.FeatureMapConfig(widths=(4096,), depths=(1,), params=("ntk",), seeds=1, family=SMALL,
                                 outer_time=5.0, first_order_maml=False, dtype="float64")
    tasks = make_tasks(SMALL, 0)
    gram = infinite_gram(NetSpec(), tasks)
    f0 = initial_outputs(init_net(NetSpec(), 4096, 0, SMALL.d, 1), tasks.points)
    preds, rows, _ = fm.train_unit(config, fm.Unit("ntk", 1, 4096, 0))
    mup, _, _ = fm.train_unit(config, fm.Unit("mup", 1, 4096, 0))
    assert all(r["failed"] == "" for r in rows)
    for method in fm.METHODS:
        lr, steps = fm.schedule(config, method, tasks, gram)
        cf = closed_form(method, tasks, gram, config.gd(lr, steps), f0)
        assert d_rel(preds[method], cf) < 0.15, method
        if method != "head-only":
            assert d_rel(mup[method], cf) > 2 * d_rel(preds[method], cf), method


TINY_FLAGS = ["feature-map", "--widths", "32,64", "--depths", "1", "--seeds", "2", "--family", "subspace", "--d", "8",
              "--rank", "2", "--train-tasks", "3", "--test-tasks", "2", "--n-query", "3", "--n-support", "3",
              "--outer-time", "2", "--quiet"]


@pytest.mark.slow
def test_command_writes_resumes_and_stops_on_budget(tmp_path, capsys):
    out, fig, cache = tmp_path / "fm", tmp_path / "fm.png", tmp_path / "cache"
    common = TINY_FLAGS + ["--out", str(out), "--figure", str(fig), "--cache", str(cache)]
    assert main(common + ["--budget-minutes", "1e-9"]) == 0        # stops before the first unit
    assert "rerun the same command to resume" in capsys.readouterr().out
    assert not out.exists()
    assert main(common) == 0
    text = capsys.readouterr().out
    assert "verdict at the widest width" in text
    verdicts = __import__("pandas").read_csv(out / "verdicts.csv")
    assert len(verdicts) == 2 * 2 * 1                      # params x pairs x depths
    rows = __import__("pandas").read_csv(out / "rows.csv")
    assert len(rows) == 2 * 2 * 2 * len(fm.METHODS) and (rows["failed"].fillna("") == "").all()
    assert np.isfinite(rows[rows["width"] == 64]["delta_width"]).all()
    assert json.loads((out / "config.json").read_text())["command"] == "feature-map"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(common) == 0                                # resumes: every unit cached, nothing retrained
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    assert fig.is_file()


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["feature-map", "--family", "teacher", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "known subspace" in err and len(err.strip().splitlines()) == 1
    assert main(["feature-map", "--params", "ntk,foo", "--out", str(tmp_path / "o")]) == 2
    assert "unknown parameterisation 'foo'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_shards_then_the_combining_run_write_the_serial_files(tmp_path, capsys):
    """The grid runner (ntk_bridge.grid) under the feature map: 2 shards (which write no results),
    then the same command without --shard, trains nothing more and writes the serial run's files
    byte for byte (rows.csv up to its cpu_seconds column, which each run measures)."""
    import pandas as pd

    def flags(name):
        return TINY_FLAGS + ["--out", str(tmp_path / name), "--figure", str(tmp_path / f"{name}.png"),
                             "--cache", str(tmp_path / f"{name}.cache")]

    assert main(flags("serial")) == 0
    for k in range(2):
        assert main(flags("shards") + ["--shard", f"{k}/2"]) == 0
        assert "in the cache" in capsys.readouterr().out and not (tmp_path / "shards").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards.cache").iterdir()}
    assert len(stamps) == 2 * 2 * 2                                   # params x widths x seeds, one file each
    assert main(flags("shards")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards.cache").iterdir()} == stamps
    a, b = tmp_path / "serial", tmp_path / "shards"
    for name in sorted(p.name for p in a.iterdir()):
        if name == "rows.csv":
            pd.testing.assert_frame_equal(pd.read_csv(a / name).drop(columns="cpu_seconds"),
                                          pd.read_csv(b / name).drop(columns="cpu_seconds"), check_exact=True)
        elif name != "run.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (tmp_path / "serial.png").read_bytes() == (tmp_path / "shards.png").read_bytes()
