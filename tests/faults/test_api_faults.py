"""The Python API (`import ntk_bridge as nb`) under bad input: every case is one BridgeError line
naming the argument as the user passed it and the fix (issue 34). Table-driven: each row is
(case id, the call, words the one line must contain)."""

from __future__ import annotations

import numpy as np
import pytest

import ntk_bridge as nb
from ntk_bridge.engine import _checks
from ntk_bridge.errors import BridgeError

RNG = np.random.default_rng(0)
D = 4


def raw(t=2, q=3, s=2, d=D):
    """Raw Gaussian task arrays (off the sphere), as a new user has them."""
    return RNG.normal(size=(t, q, d)), RNG.normal(size=(t, q)), RNG.normal(size=(t, s, d)), RNG.normal(size=(t, s))


def on_sphere(t=2, q=3, s=2, d=D):
    xq, yq, xs, ys = raw(t, q, s, d)
    return nb.to_sphere(xq.reshape(-1, d)).reshape(xq.shape), yq, nb.to_sphere(xs.reshape(-1, d)).reshape(xs.shape), ys


TASKS = nb.task_set(on_sphere(), on_sphere())
N = len(TASKS.points)
X = nb.to_sphere(RNG.normal(size=(5, D)))
GRAM = nb.fc_kernels(nb.NetSpec(depth=2), TASKS.points)
F = np.ones((2, 3, 1))


def with_nan(arrays, i):
    arrays = list(arrays)
    a = np.array(arrays[i], dtype=float)
    a.flat[1] = np.nan
    arrays[i] = a
    return tuple(arrays)


def kfn(ntk, nngp):
    """A stand-in kernel_fn returning ``ntk(x1, x2)`` and ``nngp(x1, x2)``."""
    return lambda x1, x2, get: (ntk(x1, x2), nngp(x1, x2))


def lin(a, b):
    return a @ b.T / a.shape[1]


CASES = [
    # ---- first calls on raw data: the words name what the user passed and what to call
    ("raw-gaussian-depth-study", lambda: nb.run_depth_study(nb.task_set(raw(), raw()), nb.NetSpec(depth=2)),
     ["x_query, x_support", "off the sphere", "nb.to_sphere(x)", "before nb.task_set"]),
    ("raw-gaussian-fc-kernels", lambda: nb.fc_kernels(nb.NetSpec(depth=2), RNG.normal(size=(5, D))),
     ["x1 are off the sphere", "nb.to_sphere(x)", "normalize=True"]),
    ("raw-gaussian-depth-sweep", lambda: nb.depth_sweep(nb.NetSpec(depth=2), RNG.normal(size=(5, D))),
     ["x1 are off the sphere", "nb.to_sphere(x)"]),
    # ---- task_set: dtypes, shapes, finiteness
    ("task-nan-x", lambda: nb.task_set(with_nan(raw(), 0), on_sphere()), ["train x_query", "1 NaN or infinite", "index (0, 0, 1)"]),
    ("task-inf-y", lambda: nb.task_set(on_sphere(), tuple(np.where(np.arange(4) == 3, np.inf, 0) if i == 3 else a
                                                         for i, a in enumerate(on_sphere(s=2)))),
     ["test y_support", "NaN or infinite"]),
    ("task-string-x", lambda: nb.task_set((np.full((2, 3, D), "a"),) + on_sphere()[1:], on_sphere()),
     ["train x_query", "not a numeric array", "text"]),
    ("task-complex-x", lambda: nb.task_set((on_sphere()[0] * 1j,) + on_sphere()[1:], on_sphere()),
     ["train x_query", "real-valued", "complex128"]),
    ("task-bool-y", lambda: nb.task_set(on_sphere()[:1] + (np.ones((2, 3), bool),) + on_sphere()[2:], on_sphere()),
     ["train y_query", "dtype bool", "dtype=float"]),
    ("task-ragged", lambda: nb.task_set(([[1.0, 2.0], [3.0]],) + on_sphere()[1:], on_sphere()),
     ["train x_query", "not a numeric array"]),
    ("task-none", lambda: nb.task_set((None,) + on_sphere()[1:], on_sphere()), ["train x_query is None"]),
    ("task-2d-x", lambda: nb.task_set((np.ones((3, D)),) + on_sphere()[1:], on_sphere()),
     ["train x_query", "shape (tasks, points, d)"]),
    ("task-count-mismatch", lambda: nb.task_set(on_sphere(t=2)[:2] + on_sphere(t=3)[2:], on_sphere()),
     ["disagree on the number of tasks"]),
    ("task-not-tuple", lambda: nb.task_set(np.ones((2, 3, D)), on_sphere()), ["train must be a tuple"]),
    ("task-three-arrays", lambda: nb.task_set(on_sphere()[:3], on_sphere()), ["length 3"]),
    ("task-dim-mismatch", lambda: nb.task_set(on_sphere(d=4), on_sphere(d=5)), ["same input dimension"]),
    # ---- kernels
    ("fc-spec-string", lambda: nb.fc_kernels("relu", X), ["spec must be a NetSpec", "nb.NetSpec"]),
    ("fc-inf", lambda: nb.fc_kernels(nb.NetSpec(), np.full((3, 3), np.inf)), ["x1 has 9 NaN or infinite"]),
    ("fc-nan-x2", lambda: nb.fc_kernels(nb.NetSpec(), X, with_nan((X,), 0)[0]), ["x2 has 1 NaN"]),
    ("fc-1d", lambda: nb.fc_kernels(nb.NetSpec(), np.ones(3)), ["x1 must be a 2-D array"]),
    ("fc-empty", lambda: nb.fc_kernels(nb.NetSpec(), np.ones((0, 3))), ["x1 is empty"]),
    ("fc-complex", lambda: nb.fc_kernels(nb.NetSpec(), X * 1j), ["x1", "real-valued", "complex"]),
    ("fc-strings", lambda: nb.fc_kernels(nb.NetSpec(), [["1", "a"]]), ["x1 is not a numeric array"]),
    ("fc-objects", lambda: nb.fc_kernels(nb.NetSpec(), np.array([[object()]], dtype=object)),
     ["x1 is not a numeric array", "object"]),
    ("fc-dim-mismatch", lambda: nb.fc_kernels(nb.NetSpec(), X, X[:, :2] * np.sqrt(2)), ["different input dimensions"]),
    ("fc-memory", lambda: nb.fc_kernels(nb.NetSpec(), nb.to_sphere(RNG.normal(size=(2_000_000, 1)))),
     ["2000000 x 2000000 points", "GiB of memory but about", "available", "fewer points"]),
    ("sweep-memory", lambda: nb.depth_sweep(nb.NetSpec(depth=3), nb.to_sphere(RNG.normal(size=(1_000_000, 1)))),
     ["at 3 depth(s)", "GiB of memory", "row blocks"]),
    ("sweep-depths", lambda: nb.depth_sweep(nb.NetSpec(depth=3), X, depths=[0, 2]), ["depths", "integers >= 1"]),
    ("to-sphere-nan", lambda: nb.to_sphere(np.array([[np.nan, 1.0]])), ["x has 1 NaN"]),
    ("to-sphere-zero-row", lambda: nb.to_sphere(np.zeros((2, 3))), ["all zeros"]),
    ("to-sphere-text", lambda: nb.to_sphere("x"), ["x is not a numeric array"]),
    ("empirical-width", lambda: nb.empirical_kernels(nb.NetSpec(depth=1), 0, 0, X), ["width must be an integer >= 1"]),
    ("empirical-seed", lambda: nb.empirical_kernels(nb.NetSpec(depth=1), 8, -1, X), ["seed must be an integer >= 0"]),
    ("empirical-nan", lambda: nb.empirical_kernels(nb.NetSpec(depth=1), 8, 0, np.full((2, 3), np.nan)), ["x1 has 6 NaN"]),
    ("empirical-memory", lambda: nb.empirical_kernels(nb.NetSpec(depth=2), 10 ** 6, 0, X),
     ["Jacobians", "parameters", "GiB of memory", "smaller width"]),
    ("gram-nan", lambda: nb.gram(np.full((2, 2), np.nan), np.eye(2)), ["ntk has 4 NaN"]),
    ("gram-asym", lambda: nb.gram(np.array([[1.0, 2.0], [0.0, 1.0]]), np.eye(2)), ["ntk is not symmetric"]),
    ("gram-shape", lambda: nb.gram(np.eye(2), np.eye(3)), ["same shape"]),
    ("gram-text", lambda: nb.gram("x", np.eye(2)), ["ntk is not a numeric array"]),
    # ---- kernels_from_kernel_fn: checked on a tiny input first
    ("kfn-not-callable", lambda: nb.kernels_from_kernel_fn(3, X), ["kernel_fn must be", "stax.serial", "got int"]),
    ("kfn-none", lambda: nb.kernels_from_kernel_fn(None, X), ["kernel_fn must be", "NoneType"]),
    ("kfn-one-argument", lambda: nb.kernels_from_kernel_fn(lambda x: x, X),
     ["cannot be called as kernel_fn(x1, x2, ('ntk', 'nngp'))"]),
    ("kfn-keyword-only-get", lambda: nb.kernels_from_kernel_fn(lambda a, b, *, get: (a, b), X),
     ["cannot be called as kernel_fn(x1, x2, ('ntk', 'nngp'))"]),
    ("kfn-raises", lambda: nb.kernels_from_kernel_fn(lambda a, b, g: 1 / 0, X),
     ["kernel_fn failed on a probe", "ZeroDivisionError"]),
    ("kfn-raises-multiline", lambda: nb.kernels_from_kernel_fn(
        lambda a, b, g: (_ for _ in ()).throw(RuntimeError("first\nsecond\nthird")), X),
     ["kernel_fn failed", "RuntimeError: first"]),
    ("kfn-single-array", lambda: nb.kernels_from_kernel_fn(lambda a, b, g: lin(a, b), X),
     ["returned ndarray", "the pair (ntk, nngp)"]),
    ("kfn-three-outputs", lambda: nb.kernels_from_kernel_fn(lambda a, b, g: (lin(a, b),) * 3, X), ["of length 3"]),
    ("kfn-wrong-shape", lambda: nb.kernels_from_kernel_fn(kfn(lin, lambda a, b: lin(a, b)[:, :1]), X),
     ["nngp output has shape (2, 1) on a probe", "expected (2, 2)", "Dense readout"]),
    ("kfn-scalar", lambda: nb.kernels_from_kernel_fn(kfn(lin, lambda a, b: 1.0), X), ["nngp output has shape ()"]),
    ("kfn-nan", lambda: nb.kernels_from_kernel_fn(kfn(lambda a, b: lin(a, b) * np.nan, lin), X),
     ["ntk output on a probe", "NaN or infinite", "check its network"]),
    ("kfn-text", lambda: nb.kernels_from_kernel_fn(kfn(lin, lambda a, b: "k"), X), ["nngp output", "not a numeric"]),
    ("kfn-x-nan", lambda: nb.kernels_from_kernel_fn(kfn(lin, lin), with_nan((X,), 0)[0]), ["x1 has 1 NaN"]),
    ("kfn-x-layout", lambda: nb.kernels_from_kernel_fn(kfn(lin, lin), X, np.ones((3, D + 1))),
     ["must have the same shape after the first axis"]),
    ("kfn-memory", lambda: nb.kernels_from_kernel_fn(kfn(lin, lin), np.ones((2_000_000, 1))),
     ["kernels of 2000000 x 2000000 points", "GiB of memory", "row blocks"]),
    # ---- predictors
    ("predict-method", lambda: nb.predict("mamll", TASKS, GRAM), ["unknown method 'mamll'"]),
    ("predict-tasks", lambda: nb.predict("anil", on_sphere(), GRAM), ["tasks must be a TaskSet", "task_set"]),
    ("predict-gram-shape", lambda: nb.predict("anil", TASKS, nb.gram(np.eye(3), np.eye(3))),
     ["gram.theta has shape (3, 3)", f"{N} points"]),
    ("predict-gram-type", lambda: nb.predict("anil", TASKS, np.eye(N)), ["gram must be a Kernels", "gram(ntk=..., nngp=...)"]),
    ("predict-f0-nan", lambda: nb.predict("anil", TASKS, GRAM, f0=np.full((N, 1), np.nan)), ["f0 has", "NaN"]),
    ("predict-f0-shape", lambda: nb.predict("anil", TASKS, GRAM, f0=np.ones(3)), ["f0 must have shape"]),
    ("predict-config", lambda: nb.predict("anil", TASKS, GRAM, config={"outer_time": 1}), ["config must be a PredictorConfig"]),
    ("adapt-method", lambda: nb.adaptation_only("xyz", TASKS, GRAM), ["unknown method 'xyz'"]),
    # ---- distances and intervals
    ("d-rel-nan", lambda: nb.d_rel(np.array([np.nan, 1.0]), np.ones(2)), ["f_a has 1 NaN"]),
    ("d-rel-zero", lambda: nb.d_rel(F, np.zeros_like(F)), ["f_b is all zeros", "zero denominator"]),
    ("d-rel-shape", lambda: nb.d_rel(np.ones(3), np.ones(4)), ["same shape", "f_a (3,)", "f_b (4,)"]),
    ("d-rel-text", lambda: nb.d_rel("abc", np.ones(3)), ["f_a is not a numeric array"]),
    ("d-tr-inf", lambda: nb.d_tr(F, F, F * np.inf), ["f_b_adapt_only has", "infinite"]),
    ("d-tr-no-transfer", lambda: nb.d_tr(F, F, F), ["f_b - f_b_adapt_only is all zeros"]),
    ("d-tr-shape", lambda: nb.d_tr(np.ones(3), np.ones(3), np.ones(2)), ["f_b_adapt_only (2,)"]),
    ("rel-err-nan", lambda: nb.relative_error(np.ones(3), np.array([1, np.nan, 1.0])), ["target has 1 NaN"]),
    ("rel-err-zero", lambda: nb.relative_error(np.ones(3), np.zeros(3)), ["target is all zeros"]),
    ("mean-ci-nan", lambda: nb.mean_ci([1.0, np.nan]), ["values has 1 NaN", "finite_mean_ci"]),
    ("mean-ci-text", lambda: nb.mean_ci(["a"]), ["values is not a numeric array"]),
    ("mean-ci-empty", lambda: nb.mean_ci([]), ["values must be a non-empty"]),
    ("mean-ci-ddof", lambda: nb.mean_ci([1.0, 2.0], ddof=-1), ["ddof must be an integer >= 0"]),
    # ---- studies and synthetic tasks
    ("study-depths-text", lambda: nb.run_depth_study(TASKS, nb.NetSpec(depth=2), depths="12"), ["depths must be"]),
    ("study-pairs", lambda: nb.run_depth_study(TASKS, nb.NetSpec(depth=2), pairs=[("mtl-b", "mtl-a")]),
     ["a pair is (method, anil|maml)"]),
    ("study-kernels-type", lambda: nb.run_depth_study(TASKS, "relu"), ["kernels must be a NetSpec"]),
    ("study-kernel-fn-depths", lambda: nb.run_depth_study(TASKS, lambda d, x: GRAM), ["give the depths"]),
    ("study-kernel-fn-shape", lambda: nb.run_depth_study(TASKS, lambda d, x: nb.gram(np.eye(2), np.eye(2)), depths=[1]),
     ["kernels(1, points).theta has shape (2, 2)"]),
    ("study-mapping-missing", lambda: nb.run_depth_study(TASKS, {1: GRAM}, depths=[1, 2]), ["no entry for depths [2]"]),
    ("summary-frame", lambda: nb.depth_summary(np.ones(3)), ["needs the DataFrame returned by"]),
    ("make-tasks-config", lambda: nb.make_tasks("teacher", 0), ["config must be a FamilyConfig"]),
    ("make-tasks-seed", lambda: nb.make_tasks(nb.FamilyConfig(), -1), ["seed must be an integer >= 0"]),
    ("make-tasks-seed-float", lambda: nb.make_tasks(nb.FamilyConfig(), 1.5), ["seed must be an integer"]),
    ("regime-config", lambda: nb.run_regime_study(config="quick"), ["config must be a RegimeMapConfig"]),
    ("width-config", lambda: nb.run_width_study(config={}), ["config must be a WidthSweepConfig"]),
]


@pytest.mark.parametrize("call, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_bridge_error_line(call, words):
    with pytest.raises(BridgeError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text and text.strip() == text and len(text) < 400, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


def test_the_memory_refusal_uses_the_available_bound(monkeypatch):
    """A request over the (patched) available memory is refused with both numbers, one under it runs."""
    monkeypatch.setattr(_checks, "available_memory", lambda: 2 ** 20)        # 1 MiB left
    x = nb.to_sphere(RNG.normal(size=(200, D)))                               # 200 x 200 x 8 B x 5 = 1.5 MiB
    with pytest.raises(BridgeError, match=r"need about 0\.00149 GiB of memory but about 0\.000977 GiB is available"):
        nb.fc_kernels(nb.NetSpec(), x)
    assert nb.fc_kernels(nb.NetSpec(), x[:100]).ntk.shape == (100, 100)       # 0.37 MiB: fits


def test_available_memory_is_a_positive_bound_below_physical_memory():
    import os

    free = _checks.available_memory()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert free is not None and 0 < free <= physical


def test_a_real_stax_kernel_fn_passes_the_probe():
    from ntk_bridge.reference.stax import stax_network

    g = nb.kernels_from_kernel_fn(stax_network(nb.NetSpec(depth=2))[2], X)
    ref = nb.fc_kernels(nb.NetSpec(depth=2), X)
    np.testing.assert_allclose(g.nngp, ref.nngp, atol=1e-10)
    np.testing.assert_allclose(g.ntk, ref.ntk, atol=1e-7)      # arccos near 1 loses ~sqrt(eps), as tests/test_api.py
