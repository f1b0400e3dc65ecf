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

Which mutation of the law each test catches: experiments/mutation_check.py (report:
experiments/results/mutations/report.md). The fast tests come first (the mutation run stops at the first
failure): the exact two-level tests (machine precision, every network of the map), the deep rho, the derived
informative profile on the kernels themselves, then the tests on the predictors at L = 1024 and 4096.
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
from ntk_bridge.engine.spec import NetSpec
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


# ----------------------------------------------------------------------------- exact on the two-level form

def _dense_gbml(method, tasks, gram, config):
    """GBML (docs/theory.md 4) written densely: F_j = P'_j Y'_j + [Theta(X_j, Z) - P'_j Theta(X'_j, Z)] A^T O(Phi) (Y_q - G),
    with the block matrix A = blockdiag([I, -P_i]) of predictors.meta_ntk and Phi = A Theta(Z, Z) A^T formed
    explicitly, O(Phi) = (Phi + ridge I)^-1 (t = inf); f_0 = 0. An independent reference for the batched code."""
    from ntk_bridge.closed_form.predictors import inner_blocks, meta_ntk

    theta = np.asarray(gram.theta)
    kin = theta if method == "maml" else np.asarray(gram.k)
    _, a = meta_ntk(method, tasks, gram, config.inner)
    z = tasks.train_z.reshape(-1)
    phi = a @ theta[np.ix_(z, z)] @ a.T
    p = inner_blocks(kin, tasks.train_q, tasks.train_s, config.inner)
    resid = (tasks.train_y_query() - p @ tasks.train_y_support()).reshape(-1, 1)
    w = a.T @ np.linalg.solve(phi + config.outer_ridge * np.eye(len(phi)), resid)       # A^T O(Phi) r, over Z
    pt = inner_blocks(kin, tasks.test_q, tasks.test_s, config.inner)
    out = []
    for j in range(len(tasks.test)):
        q, s = tasks.test_q[j], tasks.test_s[j]
        transfer = theta[np.ix_(q, z)] @ w - pt[j] @ (theta[np.ix_(s, z)] @ w)
        out.append(pt[j] @ tasks.test_y_support()[j] + transfer)
    return np.stack(out)


@pytest.mark.parametrize("net", list(NETS))
def test_the_predictors_the_law_is_checked_against_equal_the_dense_meta_ntk_formula(net):
    """ANIL and MAML of closed_form.predictors (batched, A never formed) equal the dense formula of docs/theory.md 4
    (_dense_gbml) on each network of the map at L = 64, n_q = n_s = 5, every inner loop of the map, t = inf:
    to 1e-8 relative (float64 solves of condition number <= 1e7)."""
    from ntk_bridge.closed_form.predictors import predict

    tasks = make_tasks(FamilyConfig(n_train_tasks=4, n_test_tasks=3), 0)
    with float64():
        gram = depth_sweep(replace(NETS[net], depth=64), tasks.points, depths=[64])[64]
        for inner in INNERS:
            config = PredictorConfig(inner=INNERS[inner], outer_time=math.inf, outer_ridge=1e-6)
            for method in ("anil", "maml"):
                want = _dense_gbml(method, tasks, gram, config)
                np.testing.assert_allclose(predict(method, tasks, gram, config), want, rtol=1e-8,
                                           atol=1e-8 * np.abs(want).max(), err_msg=f"{net} {inner} {method}")


_SMALL_POINTS = 24


@lru_cache(maxsize=None)
def _deep_kernel(net: str, depths=(1024,)):
    """{depth: Kernels} of a network of the map on a few points (for its q, D, rho and informative part)."""
    x = make_tasks(FamilyConfig(n_train_tasks=4, n_test_tasks=2), 0).points[:_SMALL_POINTS]
    with float64():
        return depth_sweep(replace(NETS[net], depth=max(depths)), x, depths=list(depths))


def _two_level(tasks, q: float, d: float, rho: float):
    """The exact two-level kernels of docs/theory.md 8.1 on tasks.points: K = q J, Theta = D [rho J + (1 - rho) I]."""
    from ntk_bridge.engine.spec import Kernels

    n = tasks.points.shape[0]
    return Kernels(theta=d * (rho * np.ones((n, n)) + (1 - rho) * np.eye(n)), k=q * np.ones((n, n)))


def _net_shape(net: str):
    """(q, D, rho) of the network's kernel at L = 1024: mean K(x, x), mean Theta(x, x), mean off-diagonal ratio."""
    g = _deep_kernel(net)[1024]
    theta, k = np.asarray(g.theta), np.asarray(g.k)
    off = ~np.eye(theta.shape[0], dtype=bool)
    d = float(np.mean(np.diagonal(theta)))
    return float(np.mean(np.diagonal(k))), d, float(np.mean(theta[off]) / d)


EXACT_CELLS = [(i, t) for i in ("fixed", "depth-norm", "ridge", "tau-inf") for t in (1.0, 10.0, math.inf)]


@pytest.mark.parametrize("net", list(NETS))
def test_constants_are_exact_on_the_two_level_form_for_every_network(net):
    """On kernels that ARE the two-level form (K = q J, Theta = D [rho J + (1 - rho) I], with each map network's
    q, D, rho at L = 1024) nothing is neglected: A_i 1 = r_1 1, P_i = ((1 - r_1) / n_s) J and 1 is an eigenvector
    of Theta_MTL, Phi and Phi_MAML (8.3, 8.5), so per test query F_MTL-B - F_head-only = c_B,
    F_ANIL - F_head-only = c_A, F_head-only = (1 - r_1) m'_j and F_MAML = alpha_M m'_j + c_M exactly; at t = inf
    c_M = w m_r up to the outer ridge (relative ridge / (D phi_M)). Tolerance: 1e-15 x the condition number of the
    solves (1e7, or n_s q / eps for tau = inf) relative. Every inner loop x outer time, N = 4 and 10, draws 0-2; where r_1 > 1e-3 each
    constant is at least 10 times the tolerance, so a zero prediction fails."""
    from ntk_bridge.closed_form.predictors import predict

    q, d, rho = _net_shape(net)
    resolved = 0
    for n_train, draw in [(n, d) for n in TASK_COUNTS for d in range(3)]:
        tasks = make_tasks(FamilyConfig(n_train_tasks=n_train, n_test_tasks=5), draw)
        gram = _two_level(tasks, q, d, rho)
        m_test = tasks.test_y_support().mean(axis=(1, 2))[:, None, None]
        for inner, outer in EXACT_CELLS:
            cfg = PredictorConfig(inner=INNERS[inner], outer_time=outer, outer_ridge=1e-9, outer_scale="diag")
            law = depth_law.predict_draw(tasks, gram, cfg, 1024, NETS[net].activation, NETS[net].b_std)
            f = {m: predict(m, tasks, gram, cfg) for m in ("mtl-b", "anil", "head-only", "maml")}
            scale = float(np.abs(m_test).max())
            # float64 solves: relative error ~ 1e-15 x the condition number (1e7 at most, but n_s q / eps for tau = inf)
            cond = max(1e7, tasks.test_s.shape[1] * q / INNERS[inner].eps if inner == "tau-inf" else 0.0)
            tol = 1e-15 * cond * scale
            where = f"{net} {inner} t={outer} N={n_train} draw {draw}"
            np.testing.assert_allclose(f["head-only"], (1 - law.shape.r_1) * m_test + 0 * f["head-only"], atol=tol,
                                       err_msg=where)
            np.testing.assert_allclose(f["mtl-b"] - f["head-only"], law.c_b, atol=tol, err_msg=where)
            np.testing.assert_allclose(f["anil"] - f["head-only"], law.c_a, atol=tol, err_msg=where)
            np.testing.assert_allclose(f["maml"], law.alpha_m * m_test + law.c_m + 0 * f["maml"], atol=tol,
                                       err_msg=where)
            if not math.isfinite(outer):
                m_q = np.concatenate([t.y_query for t in tasks.train]).mean()
                m_s = np.concatenate([t.y_support for t in tasks.train]).mean()
                w = depth_law.maml_training_weight(tasks, law.alpha_m, law.shape.rho)
                assert law.c_m == pytest.approx(w * (m_q - law.alpha_m * m_s), rel=1e-6, abs=tol), where
            if law.shape.r_1 > 1e-3:
                resolved += 1
                assert min(abs(law.c_b), abs(law.c_a), abs(law.c_m)) > 10 * tol, where
    assert resolved >= 12          # not vacuous: most (inner, outer, draw) cases carry a resolvable constant


def test_deep_rho_is_the_kernels_limit_for_every_network():
    """rho_L -> DEEP_RHO: 1/4 (ReLU), 4/7 (ReLU with biases), 1/3 (critical Erf). rho_L - rho_inf falls like
    L^-1 (bias-free, Erf) or L^-1/2 (biases, L >> L_b), so one Richardson step from L and 4L,
    rho(4L) + (rho(4L) - rho(L)) / (4^|q| - 1), leaves the next order: O(L^-2) (< 1e-3 at L = 1024) and O(L_b / L)
    (< 3e-3 for b = 0.5 at L = 4096). b = 0.1 has L_b = 200: at 16384 it is only 82 L_b in, its rho (0.539) is
    still moving and the next order is not small, so its limit is checked through b = 0.5 (the same 4/7)."""
    for net, (lo, hi), order, tol in (("relu-b0", (1024, 4096), 1.0, 1e-3), ("erf-critical", (1024, 4096), 1.0, 1e-3),
                                      ("relu-b0.5", (4096, 16384), 0.5, 3e-3)):
        g = _deep_kernel(net, (lo, hi))
        rho = {}
        for depth in (lo, hi):
            theta = np.asarray(g[depth].theta)
            off = ~np.eye(theta.shape[0], dtype=bool)
            rho[depth] = float(np.mean(theta[off]) / np.mean(np.diagonal(theta)))
        limit = rho[hi] + (rho[hi] - rho[lo]) / (4 ** order - 1)
        spec = NETS[net]
        assert limit == pytest.approx(depth_law.deep_rho(spec.activation, spec.b_std), abs=tol), (net, limit)


PROFILE_DEPTHS = (128, 256, 512, 1024, 2048, 4096)


def _kernel_informative(net: str, depths=PROFILE_DEPTHS) -> dict:
    """The NTK's informative part relative to D at each depth: sd over distinct pairs of Theta(x, x') / D."""
    g = _deep_kernel(net, tuple(depths))
    out = {}
    for depth in depths:
        theta = np.asarray(g[depth].theta)
        off = ~np.eye(theta.shape[0], dtype=bool)
        out[depth] = float(np.std(theta[off] / np.mean(np.diagonal(theta))))
    return out


@pytest.mark.parametrize("net", list(NETS))
def test_the_kernels_informative_part_follows_the_derived_depth_profile(net):
    """Between each L and 2L (L = 128..2048) the NTK's input-dependent part (sd of Theta(x, x') / D over distinct
    pairs) falls as the derived profile I(L) says (depth_law.informative_profile: L^-1 without biases and for
    critical Erf, the transition form with the bias onset L_b = 2 / b^2 for ReLU with biases). Tolerance on the
    log-log slope: 0.01 (the O(1/L) terms, 0.007 at L = 128) + 1 / (c L_b (S - 1)) with biases (the inputs' own
    v_0 = u_0^{-1/2} ~ 1 beside c L_b (S - 1), S = sqrt(1 + L / L_b), c = 2 sqrt2 / (3 pi); twice its size)."""
    spec = NETS[net]
    c = 2 * math.sqrt(2) / (3 * math.pi)
    got = _kernel_informative(net)
    for lo, hi in zip(PROFILE_DEPTHS, PROFILE_DEPTHS[1:]):
        slope = math.log(got[hi] / got[lo]) / math.log(2)
        want = math.log(depth_law.informative_ratio(spec.activation, spec.b_std, lo, hi)) / math.log(2)
        onset = depth_law.bias_onset_depth(spec.b_std)
        tol = 0.01 + (0 if math.isinf(onset) else 1 / (c * onset * (math.sqrt(1 + lo / onset) - 1)))
        assert slope == pytest.approx(want, abs=tol), (net, lo, slope, want, tol)


def test_the_informative_exponent_tends_to_its_limit_and_the_onset_is_where_the_bias_variance_reaches_one():
    """INFORMATIVE_EXPONENT is the deep limit the kernels reach: ReLU with b = 0.5 between L = 8192 and 16384
    (1024-2048 L_b) falls with slope -1/2 within 0.01 + 1 / (c L_b (S - 1)) = 0.021 (as above); the profile's own
    local exponent tends to the same constants (to 1e-3 at L = 1e9 L_b). The bias onset L_b = 2 / b^2 is where
    the bias part of K(x, x) = 1 + L b^2 / 2 (the engine's) reaches 1, i.e. K(x, x) = 2, for b = 0.1 and 0.5."""
    c = 2 * math.sqrt(2) / (3 * math.pi)
    got = _kernel_informative("relu-b0.5", (8192, 16384))
    onset = depth_law.bias_onset_depth(0.5)
    slope = math.log(got[16384] / got[8192]) / math.log(2)
    tol = 0.01 + 1 / (c * onset * (math.sqrt(1 + 8192 / onset) - 1))
    assert slope == pytest.approx(depth_law.informative_exponent("relu", 0.5), abs=tol)
    for act, b in (("relu", 0.0), ("relu", 0.5), ("erf", 0.43)):
        far = 1e9 * (depth_law.bias_onset_depth(b) if b and act == "relu" else 1)
        assert depth_law.informative_exponent(act, b, far) == pytest.approx(depth_law.informative_exponent(act, b), abs=1e-3)
    for b in (0.1, 0.5):
        onset = depth_law.bias_onset_depth(b)
        x = make_tasks(FamilyConfig(n_train_tasks=2, n_test_tasks=1), 0).points[:3]
        with float64():
            k = depth_sweep(NetSpec(b_std=b, depth=int(round(onset))), x, depths=[int(round(onset))])
        assert float(np.mean(np.diagonal(np.asarray(k[int(round(onset))].k)))) == pytest.approx(2.0, rel=1e-9), b


def test_the_transition_is_slow_and_the_law_labels_depths_outside_its_conditions():
    """The transition form (ReLU with biases) is halfway (-3/4) near 2 L_b and within 0.1 of -1/2 only beyond
    ~24 L_b; law_conditions labels the depths where the derivation's conditions do not hold."""
    onset = depth_law.bias_onset_depth(0.1)
    p = lambda x: depth_law.informative_exponent("relu", 0.1, x * onset)            # noqa: E731
    assert p(0.01) < -0.99 and -0.8 < p(2) < -0.7 and p(20) < -0.6 < p(30) and p(1e6) > -0.501
    assert depth_law.law_conditions("relu", 0.0, 64).startswith("outside: shallow")
    assert depth_law.law_conditions("relu", 0.0, 1024) == "" and depth_law.law_conditions("erf", 0.43, 4096) == ""
    assert depth_law.law_conditions("relu", 0.1, 256).startswith("transition")
    assert depth_law.law_conditions("relu", 0.05, 256).startswith("outside: below the bias onset")
    assert depth_law.law_conditions("relu", 0.5, 256) == ""


# ----------------------------------------------------------------------------- the constants

@pytest.mark.parametrize("net", ["relu-b0", "erf-critical"])
@pytest.mark.parametrize("inner, outer", [("depth-norm", math.inf), ("ridge", math.inf), ("fixed", 10.0)])
def test_constant_parts_of_mtl_b_and_anil_are_the_derived_ones_on_every_draw(net, inner, outer):
    """mean(F_MTL-B - F_ANIL) = c_B - c_A and mean(F_ANIL - F_head-only) = c_A on the real kernels, within the
    informative remainder's RMS (module docstring), at L = 1024 and 4096, every draw, N = 4 and 10. That bound is
    wide: the test must also reject a zero prediction, so on at least 3 of the 20 cases |c_B - c_A| exceeds twice
    it (and |c_A| for critical Erf with the fixed flow or ridge, where r_1 ~ 0.1). With biases (b = 0.1, 0.5) the
    constants are below the informative part's RMS at L <= 4096 on nearly every draw (a zero prediction passes
    there), so their formulas are checked exactly on the two-level form instead (first test of this module)."""
    rejects_b = rejects_a = 0
    for n_train, draw in _every_draw():
        for depth in DEPTHS:
            law, got, n = _law_and_measured(net, n_train, draw, depth, _config(inner, outer))
            where = f"{net} {inner} t={outer} N={n_train} draw {draw} L={depth}"
            tol_b, tol_a = got.rest_b_anil / math.sqrt(n), got.rest_a_anil / math.sqrt(n)
            assert abs(got.mean_b_anil - (law.c_b - law.c_a)) <= tol_b, where
            assert abs(got.mean_anil_head - law.c_a) <= tol_a, where
            assert got.norm_anil == pytest.approx(law.norm_anil, rel=got.rest_a_anil / got.norm_anil + 0.01), where
            rejects_b += abs(law.c_b - law.c_a) > 2 * tol_b
            rejects_a += abs(law.c_a) > 2 * tol_a
    assert rejects_b >= 3, rejects_b
    if net == "erf-critical" and inner != "depth-norm":
        assert rejects_a >= 3, rejects_a


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


# per network: tolerance on the log-log slope of d_rel's informative parts between L = 1024 and 4096
INFORMATIVE_SLOPE_TOL = {"relu-b0": 0.03, "erf-critical": 0.03, "relu-b0.1": 0.15, "relu-b0.5": 0.15}


@pytest.mark.parametrize("net", list(NETS))
def test_informative_part_falls_with_the_derived_profile_on_every_draw(net):
    """The zero-mean remainders of F_MTL-B - F_ANIL and F_head-only - F_ANIL (over ||F_ANIL||) fall between L = 1024
    and 4096 as the derived profile says (depth_law.informative_ratio: L^-1 for ReLU without biases and critical
    Erf; the transition form with the onset L_b for ReLU with biases), every draw, N = 4 and 10.
    Tolerance (INFORMATIVE_SLOPE_TOL): without biases and for Erf 0.03 (the O(1/L) terms and the predictors'
    response to the non-constant directions, which is constant once rho_L and q / D settle, within O(1/L)).
    With biases the derivation carries the *kernel's* informative part (checked to 0.01-0.03 above), but the
    predictors' response moves with rho_L across the transition (b = 0.1: rho 0.48 -> 0.54 over 1024-4096) and is
    not derived: 0.15, the measured gap being <= 0.11 (b = 0.1) and <= 0.09 (b = 0.5). Neither the bias-free -1
    (b = 0.1: 0.45 away) nor, for b = 0.1, a pure -1/2 at L < 1024 (theory 8.1) would be inside its own network's
    bound."""
    spec = NETS[net]
    want = math.log(depth_law.informative_ratio(spec.activation, spec.b_std, *DEPTHS)) / math.log(DEPTHS[1] / DEPTHS[0])
    for n_train, draw in _every_draw():
        for field in ("rest_b_anil", "rest_a_anil"):
            assert _slope(net, n_train, draw, _config("depth-norm"), field) == pytest.approx(
                want, abs=INFORMATIVE_SLOPE_TOL[net]), (net, n_train, draw, field)


@pytest.mark.parametrize("net", list(NETS))
def test_d_rel_is_the_quadrature_of_its_parts_on_every_draw(net):
    """d_rel(MTL-B, ANIL) at L = 4096 as predicted by depth_law.cell_rows, sqrt(P_B^2 + I^2) (P_B from c_B - c_A, I
    carried from the measured L = 1024 by the derived profile), misses the measured d_rel by no more than its two
    parts miss theirs: |d - sqrt(P^2 + I^2)| <= |P - P_meas| + |I - I_meas| (the triangle inequality, since
    d = sqrt(P_meas^2 + I_meas^2) exactly: a constant plus a zero-mean vector), every draw, N = 4 and 10. The
    linear sum P + I of the first form fails that bound on some draws (counted: not vacuous)."""
    spec = NETS[net]
    config = _config("fixed")
    linear_fails = 0
    for n_train, draw in _every_draw():
        tasks, grams = _draw(net, n_train, draw)
        with float64():
            rows = depth_law.cell_rows(tasks, grams, config, spec.activation, spec.b_std, draw)
            got = depth_law.measure_draw(tasks, grams[4096], config)
        at = {r["quantity"]: r for r in rows if r["depth"] == 4096}
        p = at["d_rel(MTL-B, ANIL): floor"]["predicted"]
        i = at["informative part of d_rel(MTL-B, ANIL)"]["predicted"]
        assert at["informative part of d_rel(MTL-B, ANIL)"]["carried_from"] == 1024
        p_meas = abs(got.mean_b_anil) * math.sqrt(tasks.test_q.size) / got.norm_anil
        i_meas = got.rest_b_anil / got.norm_anil
        bound = abs(p - p_meas) + abs(i - i_meas) + 1e-12
        quad = at["d_rel(MTL-B, ANIL) = sqrt(floor^2 + informative^2)"]
        assert abs(quad["measured"] - quad["predicted"]) <= bound, (net, n_train, draw)
        linear_fails += abs(quad["measured"] - (p + i)) > bound
    if net in ("relu-b0", "erf-critical"):        # floors and informative parts of comparable size
        assert linear_fails >= 1


def test_crossover_depth_is_where_the_extrapolated_informative_part_meets_the_floor():
    """L* from the informative part at L = 1024 and the floor: at L* the extrapolated informative part equals it."""
    for p in (-1.0, -0.5):
        star = depth_law.crossover_depth(1024, 0.02, 0.005, p)
        assert 0.02 * (star / 1024) ** p == pytest.approx(0.005, rel=1e-12)
    assert depth_law.crossover_depth(1024, 0.02, 0.0, -1.0) == math.inf


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
