"""width-sweep: the cost check before allocation, t intervals over few seeds, the per-width
closed-form line, failed networks kept as rows, float32 training, and --combine (issue 10 item 2,
issue 13's width-sweep cases). Everything but the last two tests runs without training."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ntk_bridge.closed_form.tasks import FamilyConfig
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.finite import at_depth, sweep
from ntk_bridge.finite.sweep import WidthSweepConfig, check_cost, n_params, peak_bytes
from ntk_bridge.stats import finite_mean_ci

# Student t quantile 0.975 with 2 dof, in closed form: for 2 dof t_p = (2p - 1) / sqrt(2 p (1 - p))
T_975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)   # 4.3027


def test_huge_width_fails_in_one_line_before_any_heavy_import(tmp_path):
    """issue 13: ``--widths 10000000000`` is refused by the cost check, exit 2, one line, nothing
    written, and neither JAX nor TensorFlow / neural-tangents was imported."""
    out, fig = tmp_path / "ws", tmp_path / "f.png"
    code = ("import sys; from ntk_bridge.commands.cli import main; "
            f"rc = main(['width-sweep', '--widths', '10000000000', '--out', {str(out)!r}, '--figure', {str(fig)!r}]); "
            "print(sorted(m for m in ('jax', 'tensorflow', 'neural_tangents') if m in sys.modules)); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: width 10000000000 at depth 1 needs about"), res.stderr
    assert "Traceback" not in res.stderr and "lower --widths" in lines[0]
    assert res.stdout.strip() == "[]"
    assert not out.exists() and not fig.exists()


def test_parameter_count_matches_the_real_network_and_the_memory_bound():
    """n_params against the leaves of an initialised network; peak_bytes is MAML's
    2 n_train (k + 1) P words; check_cost refuses exactly above 80% of the memory given."""
    import jax

    from ntk_bridge.finite.training import init_net

    for spec, width, d in ((NetSpec(depth=1), 7, 5), (NetSpec(depth=3, b_std=0.1), 16, 8),
                           (NetSpec(depth=2, readout_b_std=0.5), 9, 3)):
        net = init_net(spec, width, 0, d, 1)
        assert n_params(spec, d, width) == sum(x.size for x in jax.tree_util.tree_leaves(net.params0)), spec
    cfg = WidthSweepConfig(widths=(64, 256), net=NetSpec(depth=4))
    p = n_params(cfg.net, cfg.family.d, 256)
    want = 2 * cfg.family.n_train_tasks * (cfg.inner_steps + 1) * p * 8
    assert peak_bytes(cfg, 256) == want
    assert peak_bytes(replace(cfg, dtype="float32"), 256) == want // 2
    assert peak_bytes(replace(cfg, methods=("mtl-b",)), 256) < want / 10
    check_cost(cfg, memory=math.ceil(want / 0.8) + 1)           # just fits
    with pytest.raises(Exception, match="width 256 at depth 4 needs about .* leave maml out"):
        check_cost(cfg, memory=int(want / 0.8) - 8)


def test_t_interval_uses_the_t_quantile_and_reports_nan():
    m, h, n, bad = finite_mean_ci([1.0, 2.0, 3.0])
    assert (m, n, bad) == (2.0, 3, 0)
    assert h == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-12)     # sample std 1
    assert h / (1.96 / math.sqrt(3)) == pytest.approx(2.195, abs=1e-3)  # the normal one is 54% too narrow
    m, h, n, bad = finite_mean_ci([4.0, float("nan")])
    assert (m, n, bad) == (4.0, 1, 1) and math.isnan(h)                # one value: no interval, NaN counted
    assert all(math.isnan(v) for v in finite_mean_ci([float("nan")])[:2])


def _synthetic(depth: int, seeds=(0, 1, 2), widths=(64, 256, 1024), powers=(-0.4, -0.5, -0.6)):
    """errors/pairs frames with rel_error = 2 w^p_s per seed s, and a closed-form distance that
    changes with width."""
    err, pr = [], []
    for s, p in zip(seeds, powers):
        for w in widths:
            for m in ("mtl-b", "anil"):
                err.append(dict(depth=depth, width=w, seed=s, method=m, rel_error=2.0 * w ** p,
                                rel_error_transfer=np.nan, disc_gap=1e-4, seconds=1.0, failed=""))
            pr.append(dict(depth=depth, width=w, seed=s, pair="mtl-b vs anil", d_rel_net=0.3 + 0.01 * s + 1 / w,
                           d_rel_closed=0.3 + 0.01 * s + 2 / w, d_tr_net=0.5, d_tr_closed=0.5 + 1 / w))
    return pd.DataFrame(err), pd.DataFrame(pr)


def test_tables_use_t_intervals_over_three_seeds():
    errors, pairs = _synthetic(1)
    table = sweep.error_table(errors)
    g = table[(table["method"] == "anil") & (table["width"] == 256)].iloc[0]
    vals = 2.0 * 256.0 ** np.array([-0.4, -0.5, -0.6])
    assert g["seeds"] == 3 and g["rel_error"] == pytest.approx(vals.mean())
    assert g["rel_error_ci95"] == pytest.approx(T_975_DF2 * vals.std(ddof=1) / math.sqrt(3), rel=1e-12)
    slopes = sweep.slope_table(errors).set_index("quantity")
    assert slopes.loc["anil", "slope_seed_mean"] == pytest.approx(-0.5, abs=1e-12)
    assert slopes.loc["anil", "slope_seed_ci95"] == pytest.approx(T_975_DF2 * 0.1 / math.sqrt(3), rel=1e-9)
    dist = sweep.distance_table(pairs)
    row = dist[dist["width"] == 64].iloc[0]
    assert row["d_rel_closed"] == pytest.approx(0.31 + 2 / 64) and row["seeds"] == 3


def test_closed_form_line_is_drawn_per_width_not_as_one_mean():
    """issue 13: the dashed closed-form distance follows its per-width seed mean."""
    errors, pairs = _synthetic(1)
    fig = sweep.plot(errors, pairs, sweep.slope_table(errors, pairs), "t")
    lines = [ln for ln in fig.axes[1].get_lines() if "closed form" in ln.get_label()]
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0].get_xdata(), [64, 256, 1024])
    np.testing.assert_allclose(lines[0].get_ydata(), 0.31 + 2 / np.array([64, 256, 1024]), rtol=1e-12)
    config = WidthSweepConfig(widths=(64, 256, 1024), seeds=3).as_dict()
    table = at_depth.tidy([at_depth.Sweep(None, 1, config, errors, pairs, True, 1.0)])
    fig = at_depth.plot(table, pd.DataFrame(columns=["depth", "method", "slope_seed_mean", "slope_seed_ci95"]), "t")
    closed = [ln for ln in fig.axes[4].get_lines() if "closed form" in ln.get_label()]
    np.testing.assert_allclose(closed[0].get_ydata(), 0.31 + 2 / np.array([64, 256, 1024]), rtol=1e-12)


def _write_sweep(folder, depth, complete=True, inner_step=0.2):
    errors, pairs = _synthetic(depth)
    folder.mkdir(parents=True)
    cfg = WidthSweepConfig(widths=(64, 256, 1024), seeds=3, net=NetSpec(depth=depth), inner_step=inner_step)
    (folder / "config.json").write_text(json.dumps({"command": "width-sweep", **cfg.as_dict()}))
    (folder / "run.json").write_text(json.dumps({"complete": complete, "seconds": 12.0}))
    errors.to_csv(folder / "errors.csv", index=False)
    pairs.to_csv(folder / "pairs.csv", index=False)


def test_combine_writes_the_tidy_csv_slopes_and_figure(tmp_path, capsys):
    from ntk_bridge.commands.cli import main

    root = tmp_path / "ws"
    _write_sweep(root, 1)
    _write_sweep(root / "depth4", 4, complete=False, inner_step=0.08)
    fig = tmp_path / "at_depth.png"
    assert main(["width-sweep", "--combine", "--out", str(root), "--figure", str(fig)]) == 0
    printed = capsys.readouterr().out
    assert "INCOMPLETE" in printed and fig.stat().st_size > 10_000
    table = pd.read_csv(root / "at_depth.csv")
    assert set(table["depth"]) == {1, 4}
    assert set(table["quantity"]) == {"rel_error", "d_rel_net", "d_rel_closed", "d_tr_net", "d_tr_closed",
                                      "d_rel_gap", "d_tr_gap"}
    gap = table[(table["depth"] == 4) & (table["quantity"] == "d_rel_gap") & (table["width"] == 64)].iloc[0]
    assert gap["mean"] == pytest.approx(-1 / 64) and gap["ci95"] == pytest.approx(0, abs=1e-12)  # paired: spread cancels
    assert table[table["depth"] == 4]["inner_step"].eq(0.08).all()
    assert (~table[table["depth"] == 4]["complete"]).all() and table[table["depth"] == 1]["complete"].all()
    slopes = pd.read_csv(root / "at_depth_slopes.csv")
    s = slopes[(slopes["depth"] == 4) & (slopes["method"] == "mtl-b")].iloc[0]
    assert s["slope_seed_mean"] == pytest.approx(-0.5) and s["seeds"] == 3
    assert s["slope_seed_ci95"] == pytest.approx(T_975_DF2 * 0.1 / math.sqrt(3), rel=1e-9)
    mean = (2.0 * np.array([64, 256, 1024.0])[:, None] ** np.array([-0.4, -0.5, -0.6])).mean(axis=1)
    assert s["width_error_below_0p1"] == [64, 256, 1024][int(np.argmax(mean < 0.1))]


@pytest.mark.parametrize("args, message", [
    (["--figure", "{tmp}/f.xyz"], "unsupported format 'xyz'"),
    (["--out", "{tmp}/afile/sub"], "is a file, so the folder cannot be made"),
    (["--out", "{tmp}/afile"], "is a file; give a folder"),
])
def test_bad_output_paths_fail_in_one_line_and_write_nothing(tmp_path, capsys, args, message):
    from ntk_bridge.commands.cli import main

    (tmp_path / "afile").write_text("x")
    argv = ["width-sweep", "--widths", "8", "--seeds", "1", "--out", str(tmp_path / "out"),
            "--figure", str(tmp_path / "f.png")] + [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


TINY = FamilyConfig(d=8, n_train_tasks=3, n_test_tasks=2, n_query=3, n_support=3)


def test_a_failed_network_is_a_row_with_its_reason_not_a_crash(monkeypatch):
    """A network whose training raises (diverges at finite width while the closed form, with
    lr * lam_max = 0.5 of the infinite-width kernel, is fine) gives NaN errors and the one-line
    reason; the closed-form columns are still filled. Training is replaced by the failure."""
    from ntk_bridge.closed_form.tasks import make_tasks
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.finite import training
    from ntk_bridge.finite.closed import infinite_gram

    cfg = WidthSweepConfig(widths=(16,), seeds=1, family=TINY, inner_steps=3, outer_time=5.0, methods=("mtl-b",))
    tasks = make_tasks(TINY, 3)
    gram = infinite_gram(cfg.net, tasks)
    draw = sweep._Draw(3, tasks, gram, {"mtl-b": sweep.schedule("mtl-b", tasks, gram, cfg)})
    net = training.init_net(cfg.net, 16, 3, TINY.d, TINY.n_train_tasks)

    def diverges(*args, **kwargs):
        raise BridgeError("mtl-b at width 16 (seed 3): training diverged at step 7 (loss 1e9, initial 3)")

    monkeypatch.setattr(training, "train_and_predict", diverges)
    row, got = sweep._one_method("mtl-b", net, draw, training.initial_outputs(net, tasks.points))
    assert math.isnan(row["rel_error"]) and math.isnan(row["test_error_net"]) and got.net is None
    assert row["failed"].startswith("mtl-b at width 16 (seed 3): training diverged at step 7")
    assert np.isfinite(row["test_error_closed"]) and got.closed.shape == (2, 3, 1)
    errors = pd.DataFrame([row, {**row, "seed": 4, "rel_error": 0.2, "failed": ""}])
    t = sweep.error_table(errors).iloc[0]
    assert (t["seeds"], t["failed"], t["rel_error"]) == (1, 1, 0.2)     # reported beside n, not dropped silently


def test_float32_training_changes_the_result_far_less_than_the_width_does():
    """--dtype float32 is an honest speed-up only if its effect is small next to the quantity
    measured: here below 1% of the network's distance to its closed form at width 64, depth 2."""
    from ntk_bridge.closed_form.distances import d_rel
    from ntk_bridge.closed_form.tasks import make_tasks
    from ntk_bridge.finite.closed import closed_form, infinite_gram
    from ntk_bridge.finite.training import init_net, initial_outputs, train_and_predict

    cfg = WidthSweepConfig(widths=(64,), seeds=1, family=TINY, net=NetSpec(depth=2), inner_steps=3, outer_time=5.0)
    tasks = make_tasks(TINY, 5)
    gram = infinite_gram(cfg.net, tasks)
    net = init_net(cfg.net, 64, 5, TINY.d, TINY.n_train_tasks)
    f0 = initial_outputs(net, tasks.points)
    for method in ("mtl-b", "maml"):
        tc = sweep.schedule(method, tasks, gram, cfg)
        f64 = train_and_predict(method, net, tasks, tc).predictions
        f32 = train_and_predict(method, net, tasks, replace(tc, dtype="float32")).predictions
        width_effect = d_rel(f64, closed_form(method, tasks, gram, tc, f0))
        assert 0 < d_rel(f32, f64) < 0.01 * width_effect, (method, d_rel(f32, f64), width_effect)
