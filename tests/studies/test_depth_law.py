"""The depth law of docs/theory.md section 8, checked on every draw: ntk_bridge.studies.depth_law against the exact predictors.

Every test runs every draw of DRAWS (five) for two numbers of training tasks N (4 and 10); no draw,
depth or tolerance is chosen because it passes. The law predicts the *constant* parts of the
predictors (the two-level form K ~ q J, Theta ~ D [rho J + (1 - rho) I]) and the exponent in L of
the *informative* part (what still depends on the inputs). Tolerances follow from what the law
neglects:

- a constant predicted by the two-level form misses only the informative part's own mean. The
  informative part is measured as the zero-mean remainder of the same difference (the components
  the constant cannot carry); its mean is bounded by its RMS (the neglected term projects on the
  constant direction no more than it varies around it), so |measured - predicted| <= RMS(remainder).
  That remainder falls like L^-1 (L^-1/2 with biases), so the check tightens with depth;
- an exponent measured between L and 4L differs from the asymptotic one by the next order's
  relative change: O(1/L) without biases, O(L^-1/2) and O(2 / (L b^2)) with biases; at L = 1024
  these shift a slope by well under 0.1, the tolerance used.
"""

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from ntk_bridge.closed_form.predictors import PredictorConfig
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.precision import float64
from ntk_bridge.studies import depth_law, regime_map

DRAWS = range(5)
TASK_COUNTS = (4, 10)
DEPTHS = (1024, 4096)
NETS = {v.name: v.spec for v in regime_map.NETS}
INNERS = {v.name: v.inner for v in regime_map.INNERS}


@lru_cache(maxsize=None)
def _draw(net: str, n_train: int, draw: int, depths=DEPTHS):
    """(tasks, {depth: Kernels}) of one draw: n_train training tasks, 5 test tasks, n_q = n_s = 5, d = 16."""
    tasks = make_tasks(FamilyConfig(n_train_tasks=n_train, n_test_tasks=5), draw)
    with float64():
        grams = depth_sweep(replace(NETS[net], depth=max(depths)), tasks.points, depths=list(depths))
    return tasks, grams


def _config(inner: str, outer_time: float = math.inf) -> PredictorConfig:
    return PredictorConfig(inner=INNERS[inner], outer_time=outer_time, outer_ridge=1e-6, outer_scale="diag")


def _law_and_measured(net, n_train, draw, depth, config, depths=DEPTHS):
    tasks, grams = _draw(net, n_train, draw, depths)
    spec = NETS[net]
    with float64():
        return (depth_law.predict_draw(tasks, grams[depth], config, depth, spec.activation, spec.b_std),
                depth_law.measure_draw(tasks, grams[depth], config), tasks.test_q.size)


def _every_draw():
    return [(n, d) for n in TASK_COUNTS for d in DRAWS]


# ----------------------------------------------------------------------------- the constants

@pytest.mark.parametrize("net", ["relu-b0", "relu-b0.5", "erf-critical"])
@pytest.mark.parametrize("inner, outer", [("depth-norm", math.inf), ("ridge", math.inf), ("fixed", 10.0)])
def test_constant_parts_of_mtl_b_and_anil_are_the_derived_ones_on_every_draw(net, inner, outer):
    """mean(F_MTL-B - F_ANIL) = c_B - c_A and mean(F_ANIL - F_head-only) = c_A, within the informative
    remainder's RMS (module docstring), at L = 1024 and 4096, every draw, N = 4 and 10. c_A is ANIL's own
    constant (order r_1^2 N n_q m_r / 6): the first form of section 8 left it out."""
    for n_train, draw in _every_draw():
        for depth in DEPTHS:
            law, got, n = _law_and_measured(net, n_train, draw, depth, _config(inner, outer))
            where = f"{net} {inner} t={outer} N={n_train} draw {draw} L={depth}"
            assert abs(got.mean_b_anil - (law.c_b - law.c_a)) <= got.rest_b_anil / math.sqrt(n), where
            assert abs(got.mean_anil_head - law.c_a) <= got.rest_a_anil / math.sqrt(n), where
            assert got.norm_anil == pytest.approx(law.norm_anil, rel=got.rest_a_anil / got.norm_anil + 0.01), where


def test_anils_constant_is_what_stops_mtl_a_and_anil_meeting_for_critical_erf():
    """Critical Erf, lam tau = 1: r_1 ~ 0.1 and c_A is not negligible. Where the law says the floor |c_A|
    exceeds the informative part at L = 4096 (decided by the law's own numbers, per draw),
    d_rel(MTL-A, ANIL) there is within the informative RMS of the floor and far above the c / L
    extrapolation d_rel(1024) / 4 of the first form of section 8."""
    seen = 0
    for n_train, draw in _every_draw():
        law, got, n = _law_and_measured("erf-critical", n_train, draw, 4096, _config("fixed"))
        _, shallow, _ = _law_and_measured("erf-critical", n_train, draw, 1024, _config("fixed"))
        informative = got.rest_a_anil / got.norm_anil
        if law.plateau_a_anil < 2 * informative:
            continue
        seen += 1
        assert abs(got.d_rel_a_anil - law.plateau_a_anil) <= 2 * informative, (n_train, draw)
        assert got.d_rel_a_anil > 1.5 * shallow.d_rel_a_anil / 4, (n_train, draw)
    assert seen >= 3      # the regime exists on most draws (the law's own count, not a chosen draw)


# ----------------------------------------------------------------------------- the informative part

def _slope(net, n_train, draw, config, field):
    lo, hi = (getattr(_law_and_measured(net, n_train, draw, d, config)[1], field) for d in DEPTHS)
    return math.log(hi / lo) / math.log(DEPTHS[1] / DEPTHS[0])


@pytest.mark.parametrize("net", ["relu-b0", "relu-b0.5", "erf-critical"])
def test_informative_part_falls_with_the_derived_exponent_on_every_draw(net):
    """The zero-mean remainders of F_MTL-B - F_ANIL and F_head-only - F_ANIL fall like L^-1 (ReLU without
    biases, critical Erf) or L^-1/2 (ReLU with b = 0.5, L >> 2 / b^2 = 8) between L = 1024 and 4096,
    within 0.1 on every draw (module docstring)."""
    spec = NETS[net]
    exponent = depth_law.informative_exponent(spec.activation, spec.b_std)
    for n_train, draw in _every_draw():
        for field in ("rest_b_anil", "rest_a_anil"):
            assert _slope(net, n_train, draw, _config("depth-norm"), field) == pytest.approx(exponent, abs=0.1), \
                (net, n_train, draw, field)


def test_crossover_depth_is_where_the_extrapolated_informative_part_meets_the_floor():
    """L* from the informative part at L = 1024 and the floor: at L* the extrapolated informative part equals it."""
    for p in (-1.0, -0.5):
        star = depth_law.crossover_depth(1024, 0.02, 0.005, p)
        assert 0.02 * (star / 1024) ** p == pytest.approx(0.005, rel=1e-12)
    assert depth_law.crossover_depth(1024, 0.02, 0.0, -1.0) == math.inf
    assert depth_law.bias_onset_depth(0.1) == pytest.approx(200.0) and depth_law.bias_onset_depth(0.5) == pytest.approx(8.0)


def test_the_bias_free_exponent_does_not_hold_with_biases():
    """Where the derivation says L^-1 breaks (biases, L >> 2 / b^2) it does: with b = 0.5 every draw's
    slope is at least 0.35 away from -1, and without biases at least 0.35 away from -1/2."""
    for n_train, draw in _every_draw():
        for field in ("rest_b_anil", "rest_a_anil"):
            assert _slope("relu-b0.5", n_train, draw, _config("depth-norm"), field) > -1 + 0.35
            assert _slope("relu-b0", n_train, draw, _config("depth-norm"), field) < -0.5 - 0.35


# ----------------------------------------------------------------------------- MAML at depth

@pytest.mark.parametrize("net", ["relu-b0", "erf-critical"])
@pytest.mark.parametrize("inner, outer", [("depth-norm", math.inf), ("tau-inf", math.inf), ("depth-norm", 1.0)])
def test_maml_deep_prediction_and_its_distance_to_mtl_b_on_every_draw(net, inner, outer):
    """F_MAML ~ alpha_M m'_j + c_M per test task j, and d_rel(MTL-B, MAML) -> the per-task-constant value,
    within the parts that vary inside a test task (which a per-task constant cannot carry; module
    docstring), every draw, N = 4 and 10, L = 4096."""
    for n_train, draw in _every_draw():
        law, got, n = _law_and_measured(net, n_train, draw, 4096, _config(inner, outer))
        where = f"{net} {inner} t={outer} N={n_train} draw {draw}"
        assert abs(got.maml_mean - law.maml_mean) <= got.rest_maml / math.sqrt(n), where
        scale = np.sqrt(n) * abs(law.maml_mean)
        assert abs(got.d_rel_b_maml - law.d_rel_b_maml) <= 2 * got.rest_b_maml / scale + 1e-3, where


def test_maml_training_weight_depends_on_n_and_is_not_the_n_to_infinity_form():
    """tau = inf, bias-free ReLU (rho = 1/4, n_s = n_q = 5): alpha_M = n_s / (n_s + 3) = 5/8, and the weight of
    m_q - alpha_M m_s is w = rho r_M^2 N n_q / phi_M: 0.628 at N = 10, 0.403 at N = 4, -> 1 as N -> inf
    (the "(5/8) support + (3/8) training mean" form). The measured F_MAML follows w, not 1, on every draw."""
    assert depth_law.maml_training_weight(make_tasks(FamilyConfig(n_train_tasks=10), 0), 5 / 8, 0.25) == \
        pytest.approx(0.25 * 0.375 ** 2 * 50 / (0.75 * (1 + 0.390625) + 0.25 * 0.375 ** 2 * 50), rel=1e-12)
    for n_train, draw in _every_draw():
        tasks, grams = _draw("relu-b0", n_train, draw)
        config = _config("tau-inf")
        with float64():
            law = depth_law.predict_draw(tasks, grams[4096], config, 4096)
            got = depth_law.measure_draw(tasks, grams[4096], config)
        assert law.alpha_m == pytest.approx(5 / 8, abs=2e-3)
        m_q = np.concatenate([t.y_query for t in tasks.train]).mean()
        m_s = np.concatenate([t.y_support for t in tasks.train]).mean()
        m_test = tasks.test_y_support().mean()
        limit = law.alpha_m * m_test + (m_q - law.alpha_m * m_s)        # w = 1
        tol = got.rest_maml / math.sqrt(tasks.test_q.size)
        assert abs(got.maml_mean - law.maml_mean) <= tol
        assert abs(got.maml_mean - limit) > 10 * tol, (n_train, draw)


# ----------------------------------------------------------------------------- the width that depth needs

def _synthetic_errors(c=2.0, seeds=4, depths=(1, 2, 4, 8), widths=(64, 256, 1024), noise=0.05):
    """e = c (w / L)^-1/2 times a per-seed, per-row log-normal factor (seeded)."""
    rng = np.random.default_rng(0)
    rows = [dict(depth=L, width=w, seed=s, method=m, rel_error=c * (w / L) ** -0.5 * math.exp(noise * rng.standard_normal()))
            for s in range(seeds) for L in depths for w in widths for m in ("mtl-b", "anil")]
    import pandas as pd
    return pd.DataFrame(rows)


def test_joint_fit_recovers_the_width_over_depth_law_and_the_width_it_implies():
    """Synthetic errors c (w/L)^-1/2 with 5% log noise: a per-seed slope has standard error about
    0.05 / (sd(log w) sqrt(24 rows)) = 0.01, so the fitted a and b are -1/2 and +1/2 within 0.05 (5 standard
    errors) and c within 5%; w*(L) = L (4 c / d)^2 (e = d / 4 there, by construction)."""
    from ntk_bridge.finite import width_law

    fits = width_law.joint_fit(_synthetic_errors(), min_ratio=1.0)
    assert list(fits["method"]) == ["mtl-b", "anil"]
    for r in fits.itertuples():
        assert abs(r.a_width + 0.5) <= 0.05 and abs(r.b_depth - 0.5) <= 0.05
        assert r.c == pytest.approx(2.0, rel=0.05) and r.seeds == 4 and r.c_lo < r.c < r.c_hi
    w = width_law.required_width([8, 64], [0.2, 0.05], c=2.0)
    np.testing.assert_allclose(w, [8 * 40.0 ** 2, 64 * 160.0 ** 2])
    np.testing.assert_allclose(2.0 * (w / np.array([8, 64])) ** -0.5, [0.2 / 4, 0.05 / 4])
    held = width_law.holdout(_synthetic_errors(), min_ratio=1.0)       # depth 8 predicted from depths 1, 2, 4
    assert set(held["depth"]) == {8} and set(held["fitted_on"]) == {"1,2,4"} and len(held) == 6
    np.testing.assert_allclose(held["predicted"], 2.0 * (held["width"] / 8.0) ** -0.5, rtol=0.05)   # c's SE ~1%
    # a width exponent that is not -1/2 is seen as such (the fit can fail the hypothesis)
    bad = _synthetic_errors()
    bad["rel_error"] *= (bad["width"] / 64.0) ** -0.5            # e ~ w^-1
    r = width_law.joint_fit(bad, min_ratio=1.0).iloc[0]
    assert abs(r.a_width + 1.0) <= 0.05 and abs(r.a_width + 0.5) > 5 * r.a_ci95


def test_sweeps_of_one_depth_are_merged_and_a_repeated_network_is_refused():
    """depth8/ (widths 64-256) and depth8_wide/w0512_s0/ ... are one depth in the combined table."""
    from ntk_bridge.engine.spec import NetSpec
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.finite import at_depth
    from ntk_bridge.finite.sweep import WidthSweepConfig

    e = _synthetic_errors(depths=(8,))
    cfg = WidthSweepConfig(net=NetSpec(depth=8)).as_dict()
    narrow, wide = e[e["width"] < 1024], e[e["width"] == 1024]
    parts = [at_depth.Sweep(None, 8, cfg, narrow, narrow.iloc[:0], True, 2.0),
             at_depth.Sweep(None, 8, cfg, wide, wide.iloc[:0], False, 3.0)]
    (one,) = at_depth.merge(parts)
    assert len(one.errors) == len(e) and one.folders == 2 and not one.complete and one.seconds == 5.0
    with pytest.raises(BridgeError, match="appears in two folders"):
        at_depth.merge(parts + [parts[1]])
    other = dict(cfg, inner_step=0.1)
    with pytest.raises(BridgeError, match="differ in inner_step"):
        at_depth.merge([parts[0], at_depth.Sweep(None, 8, other, wide, wide.iloc[:0], True, 1.0)])
