"""The Jacobian-free finite-width kernels (ntk_bridge/finite/fluctuation.py) and the derived law of
their fluctuation at initialisation (docs/theory.md section 10).

The law is checked by Monte Carlo over M independent networks per (L, n) cell. Each network gives
one sample s_j = mean over 8 inputs on the sphere of (r_i - 1)^2, r_i = Theta_n(x_i, x_i) /
Theta_inf(x_i, x_i): every input on the sphere has the same law, so E s_j = Var r exactly, and the
s_j are independent across networks. The test asks, for EVERY cell,

    |mean_j s_j - v_law| <= t(0.9995, M - 1) * sd(s) / sqrt(M) + delta * v_law,

a two-sided 99.9% Student-t bound on the Monte Carlo error (CLT for the mean of M >= 300 iid s_j)
plus, for the leading form c(L) L/n only, the neglected order delta = 3 L/n (the exact law's second
moment exceeds the leading form by 1.04, 1.08, 1.17 at L/n = 1/64, 1/32, 1/16: section 10.4). The NNGP
law (1 + 5/n)^L - 1 is exact: delta = 0. Seeds are fixed, so the run is deterministic.

A wrong constant fails: ``test_a_mutated_constant_fails_the_variance_test`` runs the same check with
c = 5 (Hanin-Nica's rate) and with c(1) = 11/3 (the deep limit used at L = 1) and requires at least
one cell to reject each; with the mean Theta_inf(x, x) = L instead of L + 1 the mean test fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from ntk_bridge.engine.empirical import empirical_kernels, network
from ntk_bridge.engine.fc import fc_kernels
from ntk_bridge.engine.precision import float64
from ntk_bridge.engine.spec import NetSpec, to_sphere
from ntk_bridge.errors import BridgeError
from ntk_bridge.finite import fluctuation as fl

X = to_sphere(np.random.default_rng(0).standard_normal((8, 16)))
# (L, n, networks): every cell has L / n <= 1/16
CELLS = ((1, 128, 1200), (2, 64, 600), (4, 64, 400), (4, 128, 300), (8, 128, 300))


def _params(spec: NetSpec, width: int, seed: int):
    import jax

    with float64():
        init_fn, _ = network(spec, width)
        return init_fn(jax.random.PRNGKey(seed), X.shape)[1]


SPECS = (NetSpec(), NetSpec(b_std=0.1, readout_b_std=0.2), NetSpec(W_std=1.3, readout_W_std=0.7, b_std=0.5))


@pytest.mark.parametrize("spec", SPECS, ids=["default", "biases", "other-stds"])
@pytest.mark.parametrize("depth", [1, 3])
def test_equals_the_jacobian_contraction_with_the_same_weights(spec, depth):
    spec = spec.with_depth(depth)
    for seed in (0, 1):
        ref = empirical_kernels(spec, 16, seed, X)
        params = _params(spec, 16, seed)
        got = fl.init_kernels(spec, 16, X, fl.ParamsSource(params))[depth]
        assert np.abs(got.theta - ref.theta).max() <= 1e-12 * np.abs(ref.theta).max()
        assert np.abs(got.k - ref.k).max() <= 1e-12 * np.abs(ref.k).max()
        with float64():
            f0 = np.asarray(network(spec, 16)[1](params, X))[:, 0]
        assert np.abs(got.f0 - f0).max() <= 1e-12 * np.abs(f0).max()


@pytest.mark.parametrize("source", [fl.SeedSource(3), fl.KeySource(3)], ids=["seed", "key"])
def test_one_sweep_gives_each_depth_as_its_own_network(source):
    spec = NetSpec(b_std=0.3, readout_b_std=0.1)
    together = fl.init_kernels(spec, 32, X, source, depths=[1, 2, 3])
    for depth in (1, 2, 3):
        alone = fl.init_kernels(spec, 32, X, source, depths=[depth])[depth]
        np.testing.assert_array_equal(together[depth].theta, alone.theta)
        np.testing.assert_array_equal(together[depth].k, alone.k)


def test_approaches_the_infinite_kernels():
    got = fl.init_kernels(NetSpec(depth=2), 2048, X, fl.SeedSource(0))[2]
    inf = fc_kernels(NetSpec(depth=2), X)
    dev = np.linalg.norm(got.theta - inf.theta) / np.linalg.norm(inf.theta)
    assert dev < 6 * math.sqrt(4.1 * 2 / 2048)          # six standard deviations of the Frobenius law


def test_refusals_name_the_field():
    with pytest.raises(BridgeError, match="`b_std`"):
        fl.ntk_relvar(NetSpec(b_std=0.1), 128)
    with pytest.raises(BridgeError, match="`activation`"):
        fl.init_kernels(NetSpec(activation="erf"), 16, X, fl.SeedSource(0))
    with pytest.raises(BridgeError, match="`width`"):
        fl.init_kernels(NetSpec(), 0, X, fl.SeedSource(0))
    with pytest.raises(BridgeError, match="depth-1 network"):
        fl.init_kernels(NetSpec(depth=2), 16, X, fl.ParamsSource(_params(NetSpec(), 16, 0)))


def test_constants():
    assert fl.ntk_constant(1) == pytest.approx(3.0)
    assert fl.ntk_constant(10 ** 9) == pytest.approx(11 / 3, rel=1e-8)
    assert fl.readout_bias_factor(1, 1.0, 0.0) == 1.0
    # readout bias rb: Theta = (L + 1) + rb^2 on average, the fluctuating part unchanged
    assert fl.readout_bias_factor(3, 1.0, 2.0) == pytest.approx((4 / 8) ** 2)
    assert fl.nngp_relvar(1, 64) == pytest.approx(5 / 64)


# ----------------------------------------------------------------------------- Monte Carlo of the law

_CACHE: dict = {}


def _samples(L: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per network j (seeds 0..m-1): s_j (NTK), q_j (NNGP) = mean_i (ratio_i - 1)^2 and the mean ratio."""
    if (L, n) not in _CACHE:
        spec = NetSpec(depth=L)
        inf = fc_kernels(spec, X)
        s, q, mr = [], [], []
        for seed in range(m):
            got = fl.init_kernels(spec, n, X, fl.SeedSource(10_000 + seed))[L]
            r, rk = np.diag(got.theta) / np.diag(inf.theta), np.diag(got.k) / np.diag(inf.k)
            s.append(np.mean((r - 1) ** 2))
            q.append(np.mean((rk - 1) ** 2))
            mr.append(np.mean(np.diag(got.theta)))
        _CACHE[L, n] = tuple(np.array(v) for v in (s, q, mr))
    return _CACHE[L, n]


def _bound(sample: np.ndarray, law: float, delta: float) -> tuple[float, float]:
    """(|mean - law|, allowed): allowed = t(0.9995, M-1) sd / sqrt(M) + delta * law."""
    m = sample.size
    se = sample.std(ddof=1) / math.sqrt(m)
    return abs(sample.mean() - law), float(student_t.ppf(0.9995, m - 1)) * se + delta * law


def _variance_rejections(constant) -> list[str]:
    """The cells whose Monte Carlo variance rejects c(L) L/n with c = ``constant(L)``."""
    bad = []
    for L, n, m in CELLS:
        gap, allowed = _bound(_samples(L, n, m)[0], float(constant(L)) * L / n, 3 * L / n)
        if gap > allowed:
            bad.append(f"L={L} n={n}: gap {gap:.3g} > {allowed:.3g}")
    return bad


def test_ntk_diagonal_mean_is_exactly_the_infinite_one():
    for L, n, m in CELLS:
        law = fl.ntk_diag_mean(NetSpec(depth=L))
        gap, allowed = _bound(_samples(L, n, m)[2], law, 0.0)
        assert gap <= allowed, (L, n, gap, allowed)
        wrong, _ = _bound(_samples(L, n, m)[2], float(L), 0.0)       # mutation: Theta_inf(x, x) = L
        assert wrong > allowed, (L, n)


def test_ntk_diagonal_variance_is_c_L_over_n_in_every_cell():
    assert _variance_rejections(fl.ntk_constant) == []


@pytest.mark.parametrize("mutant", ["hanin-nica 5", "11/3 at L = 1"])
def test_a_mutated_constant_fails_the_variance_test(mutant):
    constant = {"hanin-nica 5": lambda L: 5.0,
                "11/3 at L = 1": lambda L: 11 / 3 if L == 1 else fl.ntk_constant(L)}[mutant]
    assert _variance_rejections(constant), f"the constant {mutant} passed every cell"


def test_nngp_diagonal_variance_is_exactly_1_plus_5_over_n_to_the_L():
    rejected = 0
    for L, n, m in CELLS:
        q = _samples(L, n, m)[1]
        gap, allowed = _bound(q, float(fl.nngp_relvar(L, n)), 0.0)
        assert gap <= allowed, (L, n, gap, allowed)
        wrong, _ = _bound(q, float(fl.ntk_constant(L)) * L / n, 0.0)  # the NTK's constant is not the NNGP's
        rejected += wrong > allowed
    assert rejected >= 3
