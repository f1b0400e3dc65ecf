"""The public API (``import ntk_bridge as nb``): names, validation, and agreement with the modules.

Every API function is checked against the module path it fronts (same numbers, not "runs"), and
every bad input against its one-line BridgeError.
"""

import math
import pkgutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ntk_bridge as nb
from ntk_bridge.closed_form import predictors
from ntk_bridge.errors import BridgeError
from ntk_bridge.studies import depth_sweep as depth_module


def _arrays(rng, n_tasks, n_q=4, n_s=3, d=6, c=None):
    def sphere(n):
        return nb.to_sphere(rng.standard_normal((n_tasks * n, d))).reshape(n_tasks, n, d)

    shape = (n_tasks,) if c is None else (n_tasks, c)
    xq, xs = sphere(n_q), sphere(n_s)
    yq = rng.standard_normal(shape[:1] + (n_q,) + shape[1:])
    ys = rng.standard_normal(shape[:1] + (n_s,) + shape[1:])
    return xq, yq, xs, ys


@pytest.fixture(scope="module")
def tasks():
    rng = np.random.default_rng(3)
    return nb.task_set(train=_arrays(rng, 5), test=_arrays(rng, 3))


# ----------------------------------------------------------------------------- names

def test_every_public_name_resolves_and_none_is_shadowed_by_a_submodule():
    submodules = {m.name for m in pkgutil.iter_modules(nb.__path__)}
    for name in nb.__all__:
        assert name not in submodules, f"nb.{name} would be replaced by the submodule once it is imported"
        assert getattr(nb, name) is not None
    assert nb.Kernels(theta=np.eye(2), k=np.zeros((2, 2))).ntk[0, 0] == 1.0
    with pytest.raises(AttributeError):
        _ = nb.no_such_name


def test_import_is_cheap():
    code = "import sys, ntk_bridge; print(sorted(m for m in ('jax', 'pandas', 'neural_tangents') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- tasks

def test_task_set_from_arrays_equals_task_objects():
    rng = np.random.default_rng(0)
    tr, te = _arrays(rng, 4, c=2), _arrays(rng, 2, c=2)
    from_arrays = nb.task_set(train=tr, test=te)
    by_hand = nb.TaskSet([nb.Task(*(a[i] for a in tr)) for i in range(4)], [nb.Task(*(a[i] for a in te)) for i in range(2)])
    np.testing.assert_array_equal(from_arrays.points, by_hand.points)
    np.testing.assert_array_equal(from_arrays.test_y_support(), by_hand.test_y_support())
    assert from_arrays.train_y_query().shape == (4, 4, 2)
    # 1-D labels per task become one output column
    one = nb.task_set(train=_arrays(rng, 2), test=_arrays(rng, 1))
    assert one.train_y_query().shape == (2, 4, 1)


@pytest.mark.parametrize("train, fragment", [
    ((1, 2), "tuple (x_query, y_query, x_support, y_support)"),
    ("abc", "tuple (x_query, y_query, x_support, y_support)"),
    ((np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2, 4)), np.ones((2, 2))), "x_query must have shape"),
    ((np.ones((2, 3, 4)), np.ones((3, 3)), np.ones((2, 2, 4)), np.ones((2, 2))), "disagree on the number of tasks"),
    ((np.ones((2, 3, 4)), np.ones((2, 3)), np.ones((2, 2, 5)), np.ones((2, 2))), "d=4 but support inputs d=5"),
])
def test_task_set_refuses_bad_arrays(train, fragment):
    rng = np.random.default_rng(0)
    with pytest.raises(BridgeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        nb.task_set(train=train, test=_arrays(rng, 1))


def test_a_list_of_tasks_where_a_task_set_is_expected_is_one_clear_error(tasks):
    g = nb.fc_kernels(nb.NetSpec(depth=2), tasks.points)
    for call in (lambda: nb.predict("mtl-b", list(tasks.train), g),
                 lambda: predictors.predict("mtl-b", list(tasks.train), g),
                 lambda: nb.adaptation_only("anil", list(tasks.test), g),
                 lambda: nb.run_depth_study(list(tasks.train), nb.NetSpec(depth=2))):
        with pytest.raises(BridgeError, match="TaskSet") as err:
            call()
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- kernels and predictors

def _arccos_gram(x):
    """Depth-1 ReLU NTK / NNGP on the sphere, written from the arc-cosine formulas (docs/theory.md 2)."""
    rho = np.clip(x @ x.T / x.shape[1], -1, 1)
    t = np.arccos(rho)
    nngp = (np.sin(t) + (math.pi - t) * rho) / math.pi
    return nngp + rho * (math.pi - t) / math.pi, nngp


def test_own_gram_plugs_in_and_matches_the_engine(tasks):
    ntk, nngp = _arccos_gram(tasks.points)
    mine = nb.gram(ntk=ntk, nngp=nngp)
    engine = nb.fc_kernels(nb.NetSpec(depth=1), tasks.points)
    # arccos near rho = 1 loses ~sqrt(eps) of precision; the formulas agree to that
    np.testing.assert_allclose(mine.ntk, engine.ntk, atol=1e-7)
    np.testing.assert_allclose(mine.nngp, engine.nngp, atol=1e-12)
    np.testing.assert_allclose(np.diag(mine.ntk), 2.0, atol=1e-12)   # L + 1 for ReLU without biases
    config = nb.PredictorConfig(outer_time=5.0)
    for m in nb.METHODS:
        np.testing.assert_allclose(nb.predict(m, tasks, mine, config), predictors.predict(m, tasks, engine, config),
                                   atol=1e-5, err_msg=m)


@pytest.mark.parametrize("ntk, nngp, fragment", [
    (np.ones((3, 2)), np.ones((3, 2)), "square matrix"),
    (np.array([[1.0, 2.0], [0.0, 1.0]]), np.eye(2), "not symmetric"),
    (np.full((2, 2), np.nan), np.eye(2), "NaN or infinite"),
    (np.eye(2), np.eye(3), "same shape"),
    ("x", np.eye(2), "not a numeric array"),
])
def test_gram_refuses_bad_matrices(ntk, nngp, fragment):
    with pytest.raises(BridgeError, match=fragment):
        nb.gram(ntk=ntk, nngp=nngp)


def test_predict_refuses_bad_inputs(tasks):
    g = nb.fc_kernels(nb.NetSpec(depth=2), tasks.points)
    n = len(tasks.points)
    cases = [(lambda: nb.predict("mtl-c", tasks, g), "unknown method"),
             (lambda: nb.predict("anil", tasks, g.theta), "must be a Kernels"),
             (lambda: nb.predict("anil", tasks, nb.gram(np.eye(n - 1), np.eye(n - 1))), "compute the kernels on tasks.points"),
             (lambda: nb.predict("anil", tasks, g, config={"outer_time": 1}), "must be a PredictorConfig")]
    for call, fragment in cases:
        with pytest.raises(BridgeError, match=fragment):
            call()


def test_api_predictions_and_distances_equal_the_modules(tasks):
    g = nb.fc_kernels(nb.NetSpec(depth=3), tasks.points)
    config = nb.PredictorConfig(inner=nb.InnerLoop("flow", tau=0.5), outer_time=math.inf)
    fa, fb = nb.predict("mtl-b", tasks, g, config), nb.predict("anil", tasks, g, config)
    np.testing.assert_array_equal(fa, predictors.predict("mtl-b", tasks, g, config))
    base = nb.adaptation_only("anil", tasks, g, config)
    np.testing.assert_array_equal(base, predictors.adaptation_only("anil", tasks, g, config))
    assert nb.d_rel(fa, fb) == pytest.approx(np.linalg.norm(fa - fb) / np.linalg.norm(fb), rel=1e-14)
    assert nb.d_tr(fa, fb, base) == pytest.approx(np.linalg.norm(fa - fb) / np.linalg.norm(fb - base), rel=1e-14)


# ----------------------------------------------------------------------------- studies

def test_depth_study_equals_the_command_path_for_netspec_mapping_and_function():
    family = nb.FamilyConfig(n_train_tasks=4, n_test_tasks=3, n_query=3, n_support=3, d=8)
    spec = nb.NetSpec(depth=8)
    depths = (1, 2, 8)
    study = depth_module.DepthStudyConfig(depths=depths, draws=2, seed=5, net=spec, family=family)
    expected = pd.DataFrame(depth_module.run_draw(study, 0) + depth_module.run_draw(study, 1))
    draws = [nb.make_tasks(family, 5), nb.make_tasks(family, 6)]
    by_spec = nb.run_depth_study(draws, spec, depths=depths)
    pd.testing.assert_frame_equal(by_spec, expected)
    by_fn = nb.run_depth_study(draws, lambda L, x: nb.fc_kernels(spec.with_depth(L), x), depths=depths)
    pd.testing.assert_frame_equal(by_fn, expected, rtol=1e-12)
    mapping = nb.depth_sweep(spec, draws[0].points, depths=depths)
    by_map = nb.run_depth_study(draws[0], mapping)
    pd.testing.assert_frame_equal(by_map, expected[expected["draw"] == 0].reset_index(drop=True))
    summary = nb.depth_summary(by_spec)
    assert set(summary["pair"]) == {"mtl-b vs anil", "mtl-b vs maml", "mtl-a vs anil"}


def test_depth_study_refuses_bad_inputs(tasks):
    g = {1: nb.fc_kernels(nb.NetSpec(depth=1), tasks.points)}
    cases = [(lambda: nb.run_depth_study(tasks, g, depths=[1, 2]), "no entry for depths"),
             (lambda: nb.run_depth_study([tasks, tasks], g), "holds the kernels of one TaskSet"),
             (lambda: nb.run_depth_study(tasks, lambda L, x: None), "give the depths"),
             (lambda: nb.run_depth_study(tasks, lambda L, x: np.eye(2), depths=[1]), "must be a Kernels"),
             (lambda: nb.run_depth_study(tasks, nb.NetSpec(), depths=[0]), "integers >= 1"),
             (lambda: nb.run_depth_study(tasks, "relu"), "must be a NetSpec"),
             (lambda: nb.run_depth_study(tasks, nb.NetSpec(), pairs=[("mtl-b", "mtl-a")]), "a pair is")]
    for call, fragment in cases:
        with pytest.raises(BridgeError, match=fragment):
            call()
    with pytest.raises(BridgeError, match="returned by ntk_bridge.run_depth_study"):
        nb.depth_summary(pd.DataFrame({"x": [1]}))


def test_regime_study_and_verdicts_on_a_small_grid(tmp_path):
    config = nb.RegimeMapConfig(nets=("relu-b0",), inners=("fixed",), outer_times=(math.inf,), depths=(1, 4, 16),
                                draws=2, deep_from=4,
                                family=nb.FamilyConfig(n_train_tasks=3, n_test_tasks=2, n_query=3, n_support=3))
    frame = nb.run_regime_study(config, cache=tmp_path)
    assert len(frame) == 3 * 3 * 2          # depths x pairs x draws
    again = nb.run_regime_study(config)      # a temporary cache: the same numbers
    pd.testing.assert_frame_equal(frame, again)
    verdicts = nb.regime_verdicts(frame, deep_from=4)
    claim = verdicts[verdicts["pair"].isin(["mtl-b vs anil", "mtl-b vs maml"])]
    assert len(claim) == 2 and claim["holds"].isin([True, False]).all()
    with pytest.raises(BridgeError, match="two depths must be >= deep_from"):
        nb.regime_verdicts(frame, deep_from=64)
    with pytest.raises(BridgeError, match="RegimeMapConfig"):
        nb.run_regime_study({"draws": 2})


def test_width_study_returns_frames_and_refuses_a_foreign_config():
    config = nb.WidthSweepConfig(widths=(16,), seeds=1, methods=("mtl-b",), pairs=(),
                                 net=nb.NetSpec(depth=1), outer_time=1.0)
    errors, pairs = nb.run_width_study(config)
    assert list(errors["width"]) == [16] and list(errors["method"]) == ["mtl-b"]
    assert np.isfinite(errors["rel_error"]).all() and (errors["rel_error"] < 1.0).all()
    with pytest.raises(BridgeError, match="WidthSweepConfig"):
        nb.run_width_study(config=3)
