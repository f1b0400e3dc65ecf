"""The project's own kernel engine against neural-tangents 0.6.5, in float64 (issue 19).

neural-tangents is a dev dependency: these tests fail (never skip) when it is missing. It is
imported through ntk_bridge.reference.compat, on the current JAX, without TensorFlow.
Tolerance: 1e-10 relative to the largest entry, far above float64 rounding of a depth-64
recursion (~1e-13) and far below any modelling difference (a wrong bias or scale is O(1e-2)).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ntk_bridge.engine.empirical import empirical_ntk, fc_ntk_and_head_ntk, linearize, ntk_and_head_ntk
from ntk_bridge.engine.fc import depth_sweep, fc_kernels
from ntk_bridge.engine.networks import fc_network
from ntk_bridge.engine.parameterization import Parameterization
from ntk_bridge.engine.precision import float64
from ntk_bridge.engine.spec import NetSpec, to_sphere
from ntk_bridge.errors import BridgeError
from ntk_bridge.reference.compat import nt
from ntk_bridge.reference.stax import nt_empirical_ntk, nt_kernels, stax_network

RTOL = 1e-10

SPECS = {
    "relu": NetSpec(depth=1),
    "relu-bias": NetSpec(depth=1, b_std=0.1, readout_b_std=0.2),
    "relu-bias-0.5": NetSpec(depth=1, b_std=0.5),
    "erf": NetSpec(depth=1, activation="erf", W_std=1.5),
    "erf-bias": NetSpec(depth=1, activation="erf", W_std=1.5, b_std=0.2, readout_b_std=0.1),
}


def _points(n, d=6, seed=0):
    return to_sphere(np.random.default_rng(seed).standard_normal((n, d)))


def _close(ours, theirs, what):
    scale = np.max(np.abs(theirs))
    err = np.max(np.abs(np.asarray(ours) - np.asarray(theirs)))
    assert err <= RTOL * scale, f"{what}: max |ours - nt| = {err:.3g} vs {RTOL:g} x {scale:.3g}"


def test_neural_tangents_is_installed_and_imports_without_tensorflow():
    """The reference is present in the dev install (a missing one fails here, not skips), and
    importing it through reference/compat.py loads no TensorFlow, in a fresh interpreter."""
    code = ("import sys; from ntk_bridge.reference.compat import nt; m = nt(); "
            "print(m.__version__, 'tensorflow' in sys.modules, 'tf2jax' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0.6.5", "False", "False"]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fc_kernels_equal_neural_tangents_at_depths_1_to_64(name):
    """Theta and K of the one-pass sweep (every depth from one pass) and of fc_kernels (one depth)
    against neural-tangents' kernel_fn per depth, for two different input sets."""
    spec = SPECS[name]
    x1, x2 = _points(7, seed=1), _points(5, seed=2)
    depths = [1, 2, 3, 8, 21, 64]
    sweep = depth_sweep(spec, x1, x2, depths=depths)
    for depth in depths:
        ref = nt_kernels(spec.with_depth(depth), x1, x2)
        _close(sweep[depth].theta, ref.theta, f"{name} theta depth {depth}")
        _close(sweep[depth].k, ref.k, f"{name} k depth {depth}")
    one = fc_kernels(spec.with_depth(8), x1)
    ref = nt_kernels(spec.with_depth(8), x1)
    _close(one.ntk, ref.theta, f"{name} fc_kernels ntk")
    _close(one.nngp, ref.k, f"{name} fc_kernels nngp")


@pytest.mark.parametrize("name", ["relu", "relu-bias", "erf-bias"])
def test_finite_network_initialises_and_applies_as_stax(name):
    """Same key, same layout, same numbers: params of fc_network equal stax.serial's, and so do
    the outputs (float64)."""
    import jax

    spec = SPECS[name].with_depth(3)
    x = _points(4, d=5)
    with float64():
        init, apply = fc_network(spec, 16, out_dim=2)
        s_init, s_apply, _ = stax_network(spec, 16, out_dim=2)
        shape, ours = init(jax.random.PRNGKey(3), x.shape)
        s_shape, theirs = s_init(jax.random.PRNGKey(3), x.shape)
        assert tuple(shape) == tuple(s_shape) == (4, 2)
        flat_o, tree_o = jax.tree_util.tree_flatten(ours)
        flat_t, tree_t = jax.tree_util.tree_flatten(theirs)
        assert tree_o == tree_t
        for a, b in zip(flat_o, flat_t):
            assert a.dtype == np.float64 and a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        _close(apply(ours, x), s_apply(theirs, x), f"{name} apply")


@pytest.mark.parametrize("name,depth", [("relu", 1), ("relu-bias", 3), ("erf-bias", 2)])
def test_empirical_ntk_equals_neural_tangents(name, depth):
    """empirical_ntk (jacrev contraction) against nt.empirical_ntk_fn(JACOBIAN_CONTRACTION) with
    the trace over outputs, for a finite network, x1 != x2 and x2 = None, two outputs."""
    import jax

    spec = SPECS[name].with_depth(depth)
    x1, x2 = _points(5, seed=4), _points(3, seed=5)
    with float64():
        init, apply = fc_network(spec, 32, out_dim=2)
        _, params = init(jax.random.PRNGKey(0), x1.shape)
        for b in (x2, None):
            ours = empirical_ntk(apply, params, x1, b)
            theirs = nt_empirical_ntk(apply, params, x1, b)
            assert ours.shape == theirs.shape == (5, 5 if b is None else 3)
            _close(ours, theirs, f"{name} empirical ntk")
            theta, k = ntk_and_head_ntk(apply, params, x1, b)      # one Jacobian, head leaves for K
            head_only = nt_empirical_ntk(lambda h, x: apply(list(params[:-1]) + [h], x), params[-1], x1, b)
            _close(theta, theirs, f"{name} theta of ntk_and_head_ntk")
            _close(k, head_only, f"{name} head-only k")


@pytest.mark.parametrize("param", ["ntk", "standard", "mup"])
@pytest.mark.parametrize("name,depth", [("relu", 1), ("relu-bias", 4), ("erf-bias", 3)])
def test_per_layer_fc_ntk_equals_neural_tangents(name, depth, param):
    """The per-layer formula (no Jacobian) against nt's Jacobian contraction, every
    parameterisation, three outputs, x1 != x2 and x2 = None; K against nt on the head alone."""
    import jax

    spec = SPECS[name].with_depth(depth)
    par = Parameterization(param)
    x1, x2 = _points(5, seed=4), _points(3, seed=5)
    with float64():
        init, apply = fc_network(spec, 24, 3, par, 6)
        _, params = init(jax.random.PRNGKey(2), x1.shape)
        for b in (x2, None):
            theta, k = fc_ntk_and_head_ntk(spec, 24, params, x1, b, param=par, d=6)
            _close(theta, nt_empirical_ntk(apply, params, x1, b), f"{name} {param} per-layer theta")
            head_only = nt_empirical_ntk(lambda h, x: apply(list(params[:-1]) + [h], x), params[-1], x1, b)
            _close(k, head_only, f"{name} {param} per-layer k")


def _small_cnn():
    """A two-layer CNN (conv 3x3 -> relu -> conv 3x3 -> relu -> global mean -> dense 4) in plain JAX."""
    import jax
    import jax.numpy as jnp

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return [jax.random.normal(k1, (3, 3, 2, 5)), jax.random.normal(k2, (3, 3, 5, 5)),
                (jax.random.normal(k3, (5, 4)), jnp.zeros((4,)) + 0.1)]

    def apply(params, x):
        for w in params[:2]:
            x = jax.nn.relu(jax.lax.conv_general_dilated(x, w / np.sqrt(w.shape[0] * w.shape[1] * w.shape[2]),
                                                         (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        w, b = params[2]
        return x.mean(axis=(1, 2)) @ w / np.sqrt(w.shape[0]) + b

    return init, apply


def test_conv_empirical_ntk_by_jacobian_blocks_and_ntk_vp_equals_neural_tangents():
    """A CNN (not an FC net): per-example Jacobian contraction, the same in blocks of 2 inputs, and
    NTK-vector products, each against nt's Jacobian contraction of the whole batch."""
    import jax

    init, apply = _small_cnn()
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((3, 6, 6, 2))
    with float64():
        params = init(jax.random.PRNGKey(0))
        for b in (x2, None):
            theirs = nt_empirical_ntk(apply, params, x1, b)
            _close(empirical_ntk(apply, params, x1, b), theirs, "cnn jacobian")
            _close(empirical_ntk(apply, params, x1, b, block=2), theirs, "cnn jacobian in blocks")
            _close(empirical_ntk(apply, params, x1, b, implementation="ntk_vp"), theirs, "cnn ntk_vp")
            _close(empirical_ntk(apply, params, x1, b, per_example=False), theirs, "cnn whole-batch jacobian")


def test_an_unknown_empirical_implementation_is_one_line():
    with pytest.raises(BridgeError, match="unknown implementation 'structured'; choose one of jacobian, ntk_vp"):
        empirical_ntk(lambda p, x: x @ p, np.ones((2, 1)), np.ones((3, 2)), implementation="structured")


def test_linearised_network_equals_neural_tangents_linearize():
    """linearize (one jvp) against nt.linearize at parameters moved away from params0."""
    import jax

    spec = SPECS["relu-bias"].with_depth(2)
    x = _points(6, seed=8)
    with float64():
        init, apply = fc_network(spec, 24)
        _, p0 = init(jax.random.PRNGKey(1), x.shape)
        _, p1 = init(jax.random.PRNGKey(2), x.shape)
        p = jax.tree_util.tree_map(lambda a, b: a + 0.1 * b, p0, p1)
        ours, theirs = linearize(apply, p0)(p, x), nt().linearize(apply, p0)(p, x)
        _close(ours, theirs, "linearize")
        assert np.max(np.abs(np.asarray(ours) - np.asarray(apply(p, x)))) > 1e-3   # not the network itself


def test_a_missing_jax_name_is_one_line_naming_the_jax_version(monkeypatch):
    """If a future JAX removes another name, the import fails with one BridgeError line naming
    the JAX version and the name (simulated: neural_tangents' import raises that ImportError)."""
    import builtins

    import jax

    from ntk_bridge.reference import compat as nt_compat

    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "neural_tangents":
            raise ImportError("cannot import name 'Gone' from 'jax.core'", name="jax.core")
        return real_import(name, *args, **kwargs)

    nt_compat.import_neural_tangents.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(sys.modules, "neural_tangents", raising=False)
    try:
        with pytest.raises(BridgeError) as err:
            nt_compat.import_neural_tangents()
    finally:
        monkeypatch.undo()
        nt_compat.import_neural_tangents.cache_clear()
    msg = str(err.value)
    assert "\n" not in msg and f"JAX {jax.__version__}" in msg and "Gone" in msg
