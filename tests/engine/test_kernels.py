"""Kernel core: one-pass depth sweep vs neural-tangents, deep-ReLU limits, finite-width checks."""

import math

import numpy as np
import pytest

from ntk_bridge.engine.empirical import empirical_kernels
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec, on_sphere, to_sphere
from ntk_bridge.errors import BridgeError
from ntk_bridge.reference.stax import nt_kernels


def _points(n, d=8, seed=0):
    return to_sphere(np.random.default_rng(seed).standard_normal((n, d)))


SPECS = [
    NetSpec(depth=1),
    NetSpec(depth=1, b_std=0.1, readout_b_std=0.2),
    NetSpec(depth=1, activation="erf", W_std=1.5, b_std=0.2),
]


@pytest.mark.parametrize("spec", SPECS, ids=["relu", "relu-bias", "erf"])
def test_depth_sweep_equals_neural_tangents_per_depth(spec):
    x1, x2 = _points(12, seed=1), _points(9, seed=2)
    depths = [1, 2, 5, 17]
    sweep = depth_sweep(spec, x1, x2, depths=depths)
    assert sorted(sweep) == depths
    for depth in depths:
        ref = nt_kernels(spec.with_depth(depth), x1, x2)
        for name in ("theta", "k"):
            ours, theirs = getattr(sweep[depth], name), getattr(ref, name)
            assert ours.shape == (12, 9)
            assert np.max(np.abs(ours - theirs)) <= 1e-10 * np.max(np.abs(theirs)), (depth, name)


def test_depth_sweep_same_inputs_exact_diagonal():
    """With x2 = x1 the off-diagonals match neural-tangents to 1e-10 and the diagonal is exactly
    Theta(x, x) = L + 1, K(x, x) = 1 (neural-tangents' own diagonal carries ~1e-8 L arccos rounding)."""
    x = _points(10, seed=3)
    sweep = depth_sweep(NetSpec(depth=32), x, depths=[3, 32])
    off = ~np.eye(10, dtype=bool)
    for depth, kern in sweep.items():
        ref = nt_kernels(NetSpec(depth=depth), x)
        assert np.max(np.abs(kern.theta - ref.theta)[off]) <= 1e-10 * (depth + 1)
        assert np.max(np.abs(kern.k - ref.k)[off]) <= 1e-10
        np.testing.assert_allclose(np.diag(kern.theta), depth + 1, rtol=1e-13)
        np.testing.assert_allclose(np.diag(kern.k), 1.0, rtol=1e-13)
        np.testing.assert_allclose(kern.theta, kern.theta.T, rtol=0, atol=1e-12 * depth)


def test_repeated_inputs_stay_exact_off_the_diagonal():
    """A point that appears twice (or in both x1 and x2) has Theta = L + 1 and K = 1 with its copy,
    to rounding, at every depth (arccos would otherwise turn 1e-16 into 1e-8 errors)."""
    x = _points(5, seed=7)
    xx = np.concatenate([x, x[:2]])
    for x2 in (None, x[:3]):
        sweep = depth_sweep(NetSpec(depth=64), xx, x2, depths=[64])[64]
        pairs = [(0, 5), (5, 0), (1, 6)] if x2 is None else [(0, 0), (5, 0), (6, 1)]
        for i, j in pairs:
            assert sweep.theta[i, j] == pytest.approx(65.0, rel=1e-14)
            assert sweep.k[i, j] == pytest.approx(1.0, rel=1e-14)


def test_deep_relu_limits_without_bias():
    """theory.md 2: (1 - K) L^2 -> 9 pi^2 / 2 and Theta(x, x') / (L + 1) -> 1/4, both from the right
    side and monotonically over L = 256, 1024, 4096."""
    x = _points(6, seed=4)
    off = ~np.eye(6, dtype=bool)
    sweep = depth_sweep(NetSpec(depth=4096), x, depths=[256, 1024, 4096])
    gaps_k, gaps_t = [], []
    for depth, kern in sorted(sweep.items()):
        scaled = (1 - kern.k[off]) * depth ** 2
        ratio = kern.theta[off] / (depth + 1)
        gaps_k.append(np.max(np.abs(scaled - 9 * np.pi ** 2 / 2)))
        gaps_t.append(np.max(np.abs(ratio - 0.25)))
        assert np.all(ratio > 0.25)
    assert gaps_k[0] > gaps_k[1] > gaps_k[2] and gaps_k[2] < 0.02 * 9 * np.pi ** 2 / 2
    assert gaps_t[0] > gaps_t[1] > gaps_t[2] and gaps_t[1] < 0.005  # "0.253 at L = 1024"


def test_deep_relu_limits_with_bias():
    """b_std = 0.1: K(x, x) = 1 + L b^2 / 2 exactly, and Theta(x, x') / Theta(x, x) rises toward 4/7."""
    b = 0.1
    x = _points(6, seed=5)
    off = ~np.eye(6, dtype=bool)
    sweep = depth_sweep(NetSpec(depth=4096, b_std=b), x, depths=[64, 1024, 4096])
    prev = 0.0
    for depth, kern in sorted(sweep.items()):
        np.testing.assert_allclose(np.diag(kern.k), 1 + depth * b ** 2 / 2, rtol=1e-12)
        ratio = (kern.theta[off] / np.diag(kern.theta)[0]).mean()
        assert prev < ratio < 4 / 7
        prev = ratio
    assert 4 / 7 - prev < 0.1


@pytest.mark.parametrize("depth", [1, 2])
def test_empirical_kernels_converge_to_analytic_with_width(depth):
    """Finite-width empirical NTK (all params) -> Theta, head-only params -> K; the error shrinks
    like width^-1/2, so 16x the width must cut the mean error by well over half (4x expected)."""
    x = _points(6, seed=6)
    spec = NetSpec(depth=depth)
    ref = nt_kernels(spec, x)
    widths = (64, 1024) if depth == 2 else (128, 2048)
    errs = {}
    for width in widths:
        rel = []
        for seed in range(3):
            emp = empirical_kernels(spec, width, seed, x)
            rel.append([np.linalg.norm(emp.theta - ref.theta) / np.linalg.norm(ref.theta),
                        np.linalg.norm(emp.k - ref.k) / np.linalg.norm(ref.k)])
        errs[width] = np.mean(rel, axis=0)
    small, big = errs[widths[0]], errs[widths[1]]
    assert np.all(big < 0.5 * small), errs
    assert np.all(big < 0.1), errs


def test_bad_inputs_get_one_line_errors():
    with pytest.raises(BridgeError, match="depth must be an integer >= 1"):
        NetSpec(depth=0)
    with pytest.raises(BridgeError, match="unknown activation"):
        NetSpec(activation="tanh")
    x = _points(4)
    with pytest.raises(BridgeError, match="different input dimensions"):
        depth_sweep(NetSpec(depth=2), x, _points(3, d=5))
    with pytest.raises(BridgeError, match="every depth must be >= 1"):
        depth_sweep(NetSpec(depth=2), x, depths=[0, 1])
    with pytest.raises(BridgeError, match="off the sphere") as err:
        depth_sweep(NetSpec(depth=2), 3 * x)
    assert "\n" not in str(err.value) and "to_sphere" in str(err.value)
    with pytest.warns(UserWarning, match="projected onto the sphere"):
        fixed = on_sphere(3 * x, normalize=True)
    np.testing.assert_allclose(fixed, x)
    with pytest.raises(BridgeError, match="NaN"):
        depth_sweep(NetSpec(depth=2), np.full((2, 3), np.nan))
    with pytest.raises(BridgeError, match="overflows at depth"):
        depth_sweep(NetSpec(depth=2000, W_std=3.0), x, depths=[2000])


def test_depth_sweep_is_one_pass():
    """Every requested depth comes from one recursion to the deepest one: asking for more depths
    does not change the deepest kernel."""
    x = _points(5)
    a = depth_sweep(NetSpec(depth=64), x, depths=[64])[64]
    b = depth_sweep(NetSpec(depth=64), x, depths=range(1, 65))[64]
    np.testing.assert_array_equal(a.theta, b.theta)
    assert math.isclose(float(a.theta[0, 0]), 65.0)


@pytest.mark.parametrize("spec", SPECS, ids=["relu", "relu-bias", "erf"])
def test_row_blocks_do_not_change_the_sweep(spec, monkeypatch):
    """The sweep runs on blocks of rows; one-row blocks (every block boundary exercised, repeated
    points in different blocks) give the same kernels as a single block, to rounding, and the
    identical pairs stay exact."""
    import ntk_bridge.engine.fc as kernels

    x1 = np.concatenate([_points(9, seed=8), _points(2, seed=9)])
    x2 = np.concatenate([_points(2, seed=9), _points(7, seed=10)])
    whole = depth_sweep(spec, x1, x2, depths=[1, 6, 20])
    monkeypatch.setattr(kernels, "BLOCK_ELEMENTS", 1)
    rows = depth_sweep(spec, x1, x2, depths=[1, 6, 20])
    for depth in (1, 6, 20):
        for name in ("theta", "k"):
            a, b = getattr(whole[depth], name), getattr(rows[depth], name)
            np.testing.assert_allclose(b, a, rtol=1e-14, atol=0)
        if spec.activation == "relu" and spec.b_std == 0:
            assert rows[depth].theta[9, 0] == pytest.approx(depth + 1, rel=1e-14)
            assert rows[depth].k[10, 1] == pytest.approx(1.0, rel=1e-14)


def test_float64_is_scoped_to_the_kernel_calls():
    """The kernel side computes in float64 inside its own calls only: before and after one, JAX's
    default dtype is float32, so the trainer (float32) needs no guard against a global switch."""
    import jax.numpy as jnp

    assert jnp.asarray(1.0).dtype == jnp.float32
    x = _points(3)
    out = nt_kernels(NetSpec(depth=2), x)
    assert out.theta.dtype == np.float64 and out.k.dtype == np.float64
    # float64 arithmetic, not float32 cast up: the off-diagonal agrees with the one-pass sweep to
    # 1e-10, far below float32's ~1e-7 relative rounding of entries of size ~3
    ref = depth_sweep(NetSpec(depth=2), x, depths=[2])[2]
    off = ~np.eye(3, dtype=bool)
    assert np.max(np.abs(out.theta - ref.theta)[off]) < 1e-10
    assert jnp.asarray(1.0).dtype == jnp.float32 and jnp.zeros(2).dtype == jnp.float32
