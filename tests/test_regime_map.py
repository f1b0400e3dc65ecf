"""The regime map and the derived depth law (docs/theory.md 7-8): tests that fail if either is wrong."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ntk_bridge import depth_law, regime_map
from ntk_bridge.cli import main
from ntk_bridge.depth_study import DepthStudyConfig, run
from ntk_bridge.inner_loop import InnerLoop
from ntk_bridge.kernels import Kernels, NetSpec, depth_sweep
from ntk_bridge.predictors import PredictorConfig, predict
from ntk_bridge.tasks import FamilyConfig, make_tasks

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
    for col in ("d_rel", "d_tr", "err_a", "err_b", "err_head_only"):
        np.testing.assert_allclose(both[f"{col}_map"], both[f"{col}_sweep"], rtol=1e-12, atol=1e-14)


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
    # an interrupted run: one cached (cell, draw) lost; the rerun recomputes it and nothing changes
    cache = tmp_path / ".rm.cache"
    files = sorted(cache.glob("*.csv"))
    assert len(files) == len(cells) * regime_map.QUICK.draws
    files[3].unlink()
    before = (out / "regime_map.csv").read_bytes()
    assert main(argv) == 0
    assert (out / "regime_map.csv").read_bytes() == before


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
def test_plateau_of_the_mtl_anil_distance_is_the_derived_constant():
    """r_1 > 0: d_rel(MTL-B, ANIL) stops shrinking at b r_1 (computed, not fitted); d_tr grows like L
    while ANIL's own transfer term c / L still dominates its O(r_1^2) constant (flow: r_1^2 = e^-10)."""
    family = FamilyConfig(n_train_tasks=6, n_test_tasks=5)
    tasks = make_tasks(family, seed=2)
    grams = depth_sweep(NetSpec(depth=16384), tasks.points, depths=[4096, 16384])
    inners = (InnerLoop("flow", tau=1.0), InnerLoop("ridge", mu=0.1))
    for inner in inners:
        cfg = PredictorConfig(inner=inner)
        d, dt = {}, {}
        for depth, gram in grams.items():
            f_b, f_a = predict("mtl-b", tasks, gram, cfg), predict("anil", tasks, gram, cfg)
            base = predict("head-only", tasks, gram, cfg)
            d[depth] = np.linalg.norm(f_b - f_a) / np.linalg.norm(f_a)
            dt[depth] = np.linalg.norm(f_b - f_a) / np.linalg.norm(f_a - base)
        s = tasks.test_s[0]
        lam_1 = float(np.linalg.eigvalsh(grams[16384].k[np.ix_(s, s)]).max())
        plateau = depth_law.mtl_anil_plateau(tasks, depth_law.constant_residual(inner, lam_1), f_a)
        assert d[16384] == pytest.approx(plateau, rel=0.05), inner.form
        if inner.form == "flow":
            assert math.log(dt[16384] / dt[4096]) / math.log(4) == pytest.approx(
                depth_law.EXPONENTS["plateau"][("d_tr", "mtl-b vs anil")], abs=0.1)


def test_a_figure_inside_the_result_folder_is_kept(tmp_path):
    out = tmp_path / "rm"
    argv = ["regime-map", "--quick", "--out", str(out), "--figure", str(out / "figs" / "map.png"), "--quiet"]
    assert main(argv) == 0 and main(argv) == 0          # the second run replaces the folder, figure included
    assert (out / "figs" / "map.png").stat().st_size > 10_000 and (out / "cells.csv").exists()
