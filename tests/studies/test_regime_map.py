"""The regime map and the derived depth law (docs/theory.md 7-8): tests that fail if either is wrong."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import PredictorConfig, predict
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.commands.cli import main
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.studies import depth_law, regime_map
from ntk_bridge.studies.depth_sweep import DepthStudyConfig, run

SMALL = FamilyConfig(n_train_tasks=4, n_test_tasks=3, n_query=4, n_support=3, d=8)


# ----------------------------------------------------------------------------- the inner-loop scale

@pytest.mark.parametrize("outer", [(math.inf, 1e-6), (0.7, 0.0)], ids=["t=inf", "t=0.7"])
def test_depth_normalised_maml_is_fixed_maml_on_theta_over_depth(outer):
    """MAML with lam*tau / kappa on Theta equals MAML with lam*tau on Theta / (L + 1), kappa = L + 1."""
    time, ridge = outer
    tasks = make_tasks(SMALL, seed=5)
    grams = depth_sweep(NetSpec(depth=64), tasks.points, depths=[4, 64])
    for depth, gram in grams.items():
        s = tasks.test_s[0]
        assert InnerLoop(scale="diag").rate_divisor(gram.theta[np.ix_(s, s)]) == pytest.approx(depth + 1, rel=1e-13)
        scaled = Kernels(theta=gram.theta / (depth + 1), k=gram.k / (depth + 1))
        normed = PredictorConfig(inner=InnerLoop("flow", tau=0.8, scale="diag"), outer_time=time, outer_ridge=ridge)
        fixed = PredictorConfig(inner=InnerLoop("flow", tau=0.8), outer_time=time * (depth + 1),
                                outer_ridge=ridge / (depth + 1))
        want = predict("maml", tasks, scaled, fixed)
        np.testing.assert_allclose(predict("maml", tasks, gram, normed), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
        # and the normalisation matters at depth: the fixed inner loop on Theta itself is different
        assert np.abs(predict("maml", tasks, gram, replace(normed, inner=InnerLoop("flow", tau=0.8))) - want).max() > 1e-3


def test_erf_critical_point_is_a_critical_fixed_point():
    """W^2 E[erf'(u)^2] = 1 and W^2 E[erf(u)^2] + b^2 = q* for u ~ N(0, q*), by Gauss-Hermite quadrature."""
    from scipy.special import erf

    x, w = np.polynomial.hermite_e.hermegauss(200)
    for q in (0.5, 1.0, 2.0):
        w_std, b_std = regime_map.erf_critical(q)
        u = math.sqrt(q) * x
        mean = lambda f: float(np.sum(w * f) / np.sqrt(2 * np.pi))  # noqa: E731
        assert w_std ** 2 * mean((2 / np.sqrt(np.pi) * np.exp(-u * u)) ** 2) == pytest.approx(1.0, abs=1e-10)
        assert w_std ** 2 * mean(erf(u) ** 2) + b_std ** 2 == pytest.approx(q, abs=1e-10)


# ----------------------------------------------------------------------------- the map

def _cell_config(family=SMALL):
    return replace(regime_map.QUICK, nets=("relu-b0.1",), inners=("depth-norm",), outer_times=(10.0,), family=family)


def test_map_cell_equals_depth_sweep_command(tmp_path):
    config = _cell_config()
    frame = regime_map.compute(config, tmp_path / "cache", progress=False)
    fam = config.family
    args = ["depth-sweep", "--depths", ",".join(map(str, config.depths)), "--draws", str(config.draws),
            "--b-std", "0.1", "--d", str(fam.d), "--train-tasks", str(fam.n_train_tasks),
            "--test-tasks", str(fam.n_test_tasks), "--n-query", str(fam.n_query), "--n-support", str(fam.n_support),
            "--inner", "flow", "--inner-time", "1", "--inner-scale", "diag", "--outer-time", "10",
            "--outer-scale", "diag", "--outer-ridge", str(config.outer_ridge),
            "--out", str(tmp_path / "ds"), "--figure", str(tmp_path / "ds.png"), "--quiet"]
    assert main(args) == 0
    sweep = pd.read_csv(tmp_path / "ds" / "depth_sweep.csv")
    keys = ["depth", "pair", "draw"]
    both = frame.merge(sweep, on=keys, suffixes=("_map", "_sweep"))
    assert len(both) == len(frame) == len(sweep) > 0
    # the depth sweep's CSV holds DEPTH_SWEEP_DIGITS significant digits: the map's value written the
    # same way must be the same text (a half-unit of the last digit is the only difference allowed)
    from ntk_bridge.report.schemas import DEPTH_SWEEP_DIGITS
    for col in ("d_rel", "d_tr", "err_a", "err_b", "err_head_only"):
        written = [float(f"{v:.{DEPTH_SWEEP_DIGITS}g}") for v in both[f"{col}_map"]]
        np.testing.assert_array_equal(written, both[f"{col}_sweep"].to_numpy())


def test_quick_command_writes_a_complete_map_and_resumes_from_its_cache(tmp_path):
    out, fig = tmp_path / "rm", tmp_path / "rm.png"
    argv = ["regime-map", "--quick", "--out", str(out), "--figure", str(fig), "--quiet"]
    assert main(argv) == 0
    tidy = pd.read_csv(out / "regime_map.csv")
    cells = regime_map.QUICK.cells()
    assert len(tidy) == len(cells) * regime_map.QUICK.draws * len(regime_map.QUICK.depths) * len(regime_map.PAIRS)
    assert set(tidy["status"]) == {"ok"} and tidy[["d_rel", "d_tr"]].notna().all().all()
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert len(verdicts) == 2 * len(cells) and fig.stat().st_size > 10_000
    # an interrupted run: one cached (network, draw) unit lost; the rerun recomputes it and nothing changes
    cache = tmp_path / ".rm.cache"
    files = sorted(cache.glob("*.unit"))
    assert len(files) == len(regime_map.QUICK.nets) * regime_map.QUICK.draws
    files[3].unlink()
    before = (out / "regime_map.csv").read_bytes()
    assert main(argv) == 0
    assert (out / "regime_map.csv").read_bytes() == before


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _map_files(out) -> dict:
    """Every result file of a regime-map run but run.json (its seconds, load and cache path differ by run)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "run.json"}


@pytest.mark.slow
def test_every_executor_and_three_shards_write_the_same_bytes(tmp_path):
    """--quick serially, on 2 local workers, on a 2-worker Dask LocalCluster (if installed) and as 3
    shards in separate processes then a combining run: byte-identical result files and figure."""
    import subprocess
    import sys

    def run(name, *extra):
        argv = ["regime-map", "--quick", "--out", str(tmp_path / name), "--figure", str(tmp_path / f"{name}.png"),
                "--cache", str(tmp_path / f"{name}.cache"), "--quiet", *extra]
        return argv, main(argv)

    assert run("serial")[1] == 0
    want = {**_map_files(tmp_path / "serial"), "figure": (tmp_path / "serial.png").read_bytes()}
    runs = {"workers": ("--workers", "2")}
    try:
        import distributed
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        runs["dask"] = ("--scheduler", cluster.scheduler_address)
    except ImportError:
        cluster = None                               # the `dask` extra is not installed: that executor untested
    try:
        for name, extra in runs.items():
            assert run(name, *extra)[1] == 0
    finally:
        if cluster is not None:
            cluster.close()
    argv = run("shards", "--shard", "0/3")[0][:-2]    # shard 0 here (writes no results), 1 and 2 as processes
    assert not (tmp_path / "shards").exists()
    code = "import sys; from ntk_bridge.commands.cli import main; raise SystemExit(main(sys.argv[1:]))"
    procs = [subprocess.run([sys.executable, "-c", code, *argv, "--shard", f"{k}/3"], cwd=REPO, capture_output=True,
                            text=True, timeout=300) for k in (1, 2)]
    assert all(p.returncode == 0 and "in the cache" in p.stdout for p in procs), [p.stdout + p.stderr for p in procs]
    cache = tmp_path / "shards.cache"
    mtimes = {f: f.stat().st_mtime_ns for f in cache.glob("*.unit")}
    assert len(mtimes) == len(regime_map.QUICK.nets) * regime_map.QUICK.draws and not (tmp_path / "shards").exists()
    assert main(argv) == 0                            # the combine: the same command without --shard
    assert {f: f.stat().st_mtime_ns for f in cache.glob("*.unit")} == mtimes      # nothing recomputed
    for name in (*runs, "shards"):
        assert {**_map_files(tmp_path / name), "figure": (tmp_path / f"{name}.png").read_bytes()} == want, name


@pytest.mark.parametrize("argv, words", [
    (["--nets", "relu-b7"], "unknown network 'relu-b7'"),
    (["--inners", "fixed,slow"], "unknown inner-loop scale 'slow'"),
    (["--draws", "1"], "draws must be an integer >= 2"),
    (["--depths", "1,2,4"], "at least two depths must be >= deep_from"),
    (["--outer-times", "0"], "outer times must be > 0"),
])
def test_bad_grids_are_refused_in_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "rm"
    code = main(["regime-map", *argv, "--out", str(out), "--figure", str(tmp_path / "f.png"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and words in err[0]
    assert not out.exists() and not (tmp_path / ".rm.cache").exists()


def test_verdict_needs_both_a_shrinking_d_tr_and_gains_over_head_only():
    row = dict(cell="c", pair="mtl-b vs anil", rate_d_tr_hi=-0.2, rate_d_rel_hi=-0.5, gain_a_Lmax_lo=0.01, gain_b_Lmax_lo=0.02)
    cases = [({}, True, True), ({"rate_d_tr_hi": 0.05}, False, True), ({"rate_d_tr_hi": -0.05}, False, True),
             ({"gain_b_Lmax_lo": -0.01}, False, False), ({"gain_a_Lmax_lo": math.nan}, False, False),
             ({"rate_d_tr_hi": 0.3, "rate_d_rel_hi": -0.02}, False, False)]
    for change, holds, weak in cases:
        (v,) = regime_map.verdicts(pd.DataFrame([{**row, **change}]))
        assert (v.holds, v.weak_holds) == (holds, weak), change


# ----------------------------------------------------------------------------- the depth law

def _slopes(frame, lo, hi):
    out = {}
    for pair, g in frame.groupby("pair"):
        m = g[(g["depth"] >= lo) & (g["depth"] <= hi)].groupby("depth")[["d_rel", "d_tr"]].mean()
        for metric in ("d_rel", "d_tr"):
            out[(metric, pair)] = np.polyfit(np.log(m.index), np.log(m[metric]), 1)[0]
    return out


def test_derived_exponents_match_measured_slopes_when_the_inner_loop_removes_the_mean():
    """tau = inf (r_1 ~ 0): slopes over L = 256..1024 equal the derived exponents within 0.1."""
    config = DepthStudyConfig(depths=(256, 512, 1024), draws=3, net=NetSpec(depth=1024),
                              predictor=PredictorConfig(inner=InnerLoop("inf", eps=1e-6)),
                              pairs=regime_map.PAIRS)
    measured = _slopes(run(config, progress=False), 256, 1024)
    for key, exponent in depth_law.EXPONENTS["mean removed"].items():
        assert measured[key] == pytest.approx(exponent, abs=0.1), key


@pytest.mark.slow
def test_plateau_of_the_mtl_anil_distance_is_the_derived_constant_on_every_draw():
    """r_1 > 0 (flow lam tau = 1: r_1 = e^-5; ridge 0.1: r_1 = 0.1 / 5.1), bias-free ReLU, L = 16384, every
    draw of five, N = 6 and 10 training tasks: d_rel(MTL-B, ANIL) is the law's floor |c_B - c_A| sqrt(n) /
    ||F_ANIL|| (depth_law.predict_draw; it includes ANIL's own constant c_A, which the first form b r_1
    left out) within 2 ||rest|| / ||F_ANIL||, rest = the zero-mean remainder of F_MTL-B - F_ANIL: the
    informative part, whose mean is bounded by its RMS (tests/studies/test_depth_law.py), so
    | ||F_B - F_A|| - |c_B - c_A| sqrt(n) | <= sqrt(n) |mean - (c_B - c_A)| + ||rest|| <= 2 ||rest||.
    And d_tr grows like L between 4096 and 16384 on every draw where the law says L* << L << L**:
    the floor exceeds the informative part of d_rel 3-fold at 4096, and ANIL's own floor |c_A| is a
    third of its informative part or less at 16384 (then each neglected term moves the slope by at most
    log sqrt(1 + 1/9) / log 4 = 0.04)."""
    from ntk_bridge.engine.precision import float64

    depths, grown = (4096, 16384), 0
    for n_train in (6, 10):
        for draw in range(5):
            tasks = make_tasks(FamilyConfig(n_train_tasks=n_train, n_test_tasks=5), draw)
            with float64():
                grams = depth_sweep(NetSpec(depth=16384), tasks.points, depths=list(depths))
                for inner in (InnerLoop("flow", tau=1.0), InnerLoop("ridge", mu=0.1)):
                    cfg = PredictorConfig(inner=inner)
                    law = {L: depth_law.predict_draw(tasks, grams[L], cfg, L) for L in depths}
                    got = {L: depth_law.measure_draw(tasks, grams[L], cfg) for L in depths}
                    m, w = got[16384], law[16384]
                    floor = w.plateau_b_anil * w.norm_anil / m.norm_anil
                    assert abs(m.d_rel_b_anil - floor) <= 2 * m.rest_b_anil / m.norm_anil, (n_train, draw, inner.form)
                    if (law[4096].plateau_b_anil >= 3 * got[4096].rest_b_anil / got[4096].norm_anil
                            and w.plateau_a_anil <= m.rest_a_anil / m.norm_anil / 3):
                        grown += 1
                        d_tr = {L: got[L].d_rel_b_anil / got[L].d_rel_a_anil for L in depths}
                        assert math.log(d_tr[16384] / d_tr[4096]) / math.log(4) == pytest.approx(
                            depth_law.EXPONENTS["plateau"][("d_tr", "mtl-b vs anil")], abs=0.1), (n_train, draw, inner.form)
    assert grown >= 1       # not vacuous: the law put 4 of the 20 (draw, inner loop) pairs in L* << L << L** when written


def test_a_figure_inside_the_result_folder_is_kept(tmp_path):
    out = tmp_path / "rm"
    argv = ["regime-map", "--quick", "--out", str(out), "--figure", str(out / "figs" / "map.png"), "--quiet"]
    assert main(argv) == 0 and main(argv) == 0          # the second run replaces the folder, figure included
    assert (out / "figs" / "map.png").stat().st_size > 10_000 and (out / "cells.csv").exists()


def test_law_option_prints_predicted_beside_measured_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "rm"
    argv = ["regime-map", "--quick", "--out", str(out), "--figure", str(tmp_path / "f.png"), "--quiet"]
    assert main(argv + ["--law", "erf-critical|fixed|t=inf"]) == 0
    printed = capsys.readouterr().out
    assert "Depth law vs measured: cell erf-critical|fixed|t=inf" in printed
    for depth in (16, 64):                                   # QUICK: depths >= deep_from = 16, both shallow
        assert f"L = {depth}   [outside: shallow" in printed
    assert "amplitude carried over from the measured depth L0 = 16" in printed
    assert "lie outside the derivation's conditions" in printed
    assert "d_rel(MTL-B, ANIL) = sqrt(floor^2 + informative^2)" in printed and "d_rel(MTL-B, MAML)" in printed
    assert not out.exists() and not (tmp_path / "f.png").exists() and not (tmp_path / ".rm.cache").exists()
    for bad, words in ((["--law", "relu-b7|fixed|t=1"], "is not a cell of this grid"),
                       (["--law", "relu-b0|fixed|t=1", "--law-depths", "4,x"], "expected comma-separated integers"),
                       (["--law", "relu-b0|fixed|t=1", "--law-depths", "0"], "--law-depths must be positive")):
        try:
            code = main(argv + bad)
        except SystemExit as stop:                          # a flag's type is checked by the parser
            code = stop.code
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0]
