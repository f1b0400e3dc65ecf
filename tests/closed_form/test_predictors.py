"""Closed-form predictors: identities of theory.md sections 3-6 that fail if a formula is wrong."""

import math

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from ntk_bridge.closed_form.distances import d_rel, d_tr, relative_error
from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import METHODS, PredictorConfig, adaptation_only, meta_ntk, predict
from ntk_bridge.closed_form.tasks import FamilyConfig, Task, TaskSet, make_tasks
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import BridgeError
from ntk_bridge.stats import fit_loglog

FAMILY = FamilyConfig(n_train_tasks=4, n_test_tasks=3, n_query=4, n_support=3, d=8)


@pytest.fixture(scope="module")
def setting():
    tasks = make_tasks(FAMILY, seed=11)
    grams = depth_sweep(NetSpec(depth=8), tasks.points, depths=[1, 3, 8])
    return tasks, grams


INNERS = [InnerLoop("flow", tau=0.7), InnerLoop("steps", step_size=0.2, steps=5), InnerLoop("ridge", mu=0.3)]


@pytest.mark.parametrize("method", ["anil", "maml"])
@pytest.mark.parametrize("inner", INNERS, ids=lambda i: i.form)
def test_meta_ntk_is_symmetric_psd(setting, method, inner):
    tasks, grams = setting
    phi, a = meta_ntk(method, tasks, grams[3], inner)
    n = len(tasks.train) * FAMILY.n_query
    assert phi.shape == (n, n) and a.shape == (n, len(tasks.train) * (FAMILY.n_query + FAMILY.n_support))
    np.testing.assert_allclose(phi, phi.T, rtol=0, atol=1e-12 * np.abs(phi).max())
    assert np.linalg.eigvalsh(phi).min() > -1e-10 * np.abs(phi).max()


@pytest.mark.parametrize("method", ["anil", "maml"])
@pytest.mark.parametrize("outer_time", [2.0, math.inf])
def test_gbml_without_inner_loop_is_ntk_regression_on_queries(setting, method, outer_time):
    tasks, grams = setting
    cfg = PredictorConfig(inner=InnerLoop("none"), outer_time=outer_time, outer_ridge=1e-9)
    np.testing.assert_allclose(predict(method, tasks, grams[3], cfg), predict("ntk", tasks, grams[3], cfg),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inner", INNERS, ids=lambda i: i.form)
def test_no_outer_training_gives_adaptation_only(setting, inner):
    """t -> 0: ANIL, MTL-B, MTL-A -> K T' Y'; MAML -> Theta T' Y' with T' from Theta."""
    tasks, grams = setting
    gram = grams[3]
    cfg = PredictorConfig(inner=inner, outer_time=0.0)
    ys = tasks.test_y_support()
    k_only = np.stack([gram.k[np.ix_(q, s)] @ inner.operator(gram.k[np.ix_(s, s)]) @ ys[j]
                       for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s))])
    th_only = np.stack([gram.theta[np.ix_(q, s)] @ inner.operator(gram.theta[np.ix_(s, s)]) @ ys[j]
                        for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s))])
    for method in ("anil", "mtl-b", "mtl-a", "head-only"):
        np.testing.assert_allclose(predict(method, tasks, gram, cfg), k_only, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(predict("maml", tasks, gram, cfg), th_only, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(adaptation_only("maml", tasks, gram, cfg), th_only, rtol=1e-12)
    # and a short outer time moves them away from it, linearly in t
    small = PredictorConfig(inner=inner, outer_time=1e-4)
    tiny = PredictorConfig(inner=inner, outer_time=1e-5)
    for method in ("anil", "mtl-b"):
        d1 = np.linalg.norm(predict(method, tasks, gram, small) - k_only)
        d2 = np.linalg.norm(predict(method, tasks, gram, tiny) - k_only)
        assert d1 > 0 and abs(d1 / d2 - 10) < 1e-2
    # a duplicated support point with a vanishing inner ridge is refused, naming the option
    xs = np.concatenate([tasks.test[0].x_support[:1]] * 2)
    dup = TaskSet(tasks.train, (Task(tasks.test[0].x_query, tasks.test[0].y_query, xs, np.ones((2, 1))),))
    dgram = depth_sweep(NetSpec(depth=3), dup.points, depths=[3])[3]
    with pytest.raises(BridgeError, match="raise the inner eps \\(`inner_eps`\\)"):
        predict("head-only", dup, dgram, PredictorConfig(inner=InnerLoop("inf", eps=1e-16)))


def test_mtl_a_is_head_only_and_ignores_training_tasks(setting):
    tasks, grams = setting
    cfg = PredictorConfig()
    a = predict("mtl-a", tasks, grams[1], cfg)
    np.testing.assert_array_equal(a, predict("head-only", tasks, grams[1], cfg))
    # change every training label: MTL-A must not move, MTL-B must
    flipped = TaskSet(tuple(Task(t.x_query, -t.y_query, t.x_support, -t.y_support) for t in tasks.train), tasks.test)
    np.testing.assert_array_equal(predict("mtl-a", flipped, grams[1], cfg), a)
    assert np.linalg.norm(predict("mtl-b", flipped, grams[1], cfg) - predict("mtl-b", tasks, grams[1], cfg)) > 1e-3


def test_ridge_head_matches_scikit_learn_kernel_ridge(setting):
    tasks, grams = setting
    gram, mu = grams[1], 0.3
    pred = predict("head-only", tasks, gram, PredictorConfig(inner=InnerLoop("ridge", mu=mu)))
    for j, (q, s) in enumerate(zip(tasks.test_q, tasks.test_s)):
        model = KernelRidge(alpha=mu, kernel="precomputed").fit(gram.k[np.ix_(s, s)], tasks.test[j].y_support)
        np.testing.assert_allclose(pred[j], model.predict(gram.k[np.ix_(q, s)]), rtol=1e-10)


def test_inner_loop_steps_equal_explicit_kernel_gradient_descent():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((6, 10))
    kp = feats @ feats.T / 10
    y = rng.standard_normal((6, 1))
    a, k = 0.3, 7
    f = np.zeros_like(y)
    for _ in range(k):                                   # f <- f - a K'(f - Y')
        f = f - a * kp @ (f - y)
    np.testing.assert_allclose(kp @ InnerLoop("steps", step_size=a, steps=k).operator(kp) @ y, f, rtol=1e-10)
    # gradient flow for a long time approaches the interpolating (tau = infinity) solution
    t_flow = InnerLoop("flow", tau=1e6).operator(kp)
    t_inf = InnerLoop("inf", eps=1e-10).operator(kp)
    np.testing.assert_allclose(kp @ t_flow @ y, kp @ t_inf @ y, rtol=1e-6)
    with pytest.raises(BridgeError, match="diverges"):
        InnerLoop("steps", step_size=10.0, steps=3).operator(kp)


def test_outer_flow_converges_to_ridgeless_limit(setting):
    tasks, grams = setting
    for method in ("anil", "mtl-b"):
        long = predict(method, tasks, grams[1], PredictorConfig(outer_time=1e7))
        inf = predict(method, tasks, grams[1], PredictorConfig(outer_time=math.inf, outer_ridge=1e-12))
        np.testing.assert_allclose(long, inf, rtol=1e-4, atol=1e-6)


def test_training_tasks_help_at_small_depth_on_the_default_family():
    """The default family is one where transfer matters: MTL-B and GBML beat K T' Y' at depth 1."""
    cfg = PredictorConfig(outer_ridge=1e-6)
    errs = {m: [] for m in ("mtl-b", "anil", "maml", "head-only")}
    for seed in range(4):
        tasks = make_tasks(FamilyConfig(), seed)
        gram = depth_sweep(NetSpec(depth=1), tasks.points)[1]
        for m in errs:
            errs[m].append(relative_error(predict(m, tasks, gram, cfg), tasks.test_y_query()))
    means = {m: np.mean(v) for m, v in errs.items()}
    assert means["head-only"] < 1.0                       # better than predicting zero
    for m in ("mtl-b", "anil", "maml"):
        assert means[m] < 0.85 * means["head-only"], means


def test_mtl_b_and_anil_approach_with_depth(setting):
    tasks, grams = setting
    cfg = PredictorConfig(outer_ridge=1e-6)
    dist = [d_rel(predict("mtl-b", tasks, grams[L], cfg), predict("anil", tasks, grams[L], cfg)) for L in (1, 3, 8)]
    assert dist[0] > dist[1] > dist[2]


def test_metrics():
    a, b, c = np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([0.0, 0.0])
    assert d_rel(a, b) == pytest.approx(1 / math.sqrt(2))
    assert d_tr(a, b, c) == pytest.approx(1 / math.sqrt(2))
    assert relative_error(c, b) == 1.0
    slope, _ = fit_loglog([1, 2, 4, 8], [3.0, 1.5, 0.75, 0.375])
    assert slope == pytest.approx(-1.0)
    with pytest.raises(BridgeError, match="same shape"):
        d_rel(a, np.ones(3))


def test_bad_inputs_get_one_line_errors(setting):
    tasks, grams = setting
    with pytest.raises(BridgeError, match="negative ridge"):
        PredictorConfig(outer_ridge=-1.0)
    with pytest.raises(BridgeError, match="mu > 0"):
        InnerLoop("ridge", mu=-0.1)
    with pytest.raises(BridgeError, match="unknown method"):
        predict("reptile", tasks, grams[1])
    with pytest.raises(BridgeError, match="compute the kernels on tasks.points"):
        predict("anil", tasks, depth_sweep(NetSpec(depth=1), tasks.points[:5])[1])
    with pytest.raises(BridgeError, match="labels"):
        Task(np.zeros((3, 2)), np.zeros((2, 1)), np.zeros((1, 2)), np.zeros((1, 1)))
    with pytest.raises(BridgeError, match="same \\(n_query, n_support\\)"):
        TaskSet((tasks.train[0], Task(np.ones((1, 8)), np.ones(1), np.ones((2, 8)), np.ones(2))), tasks.test)
    # a training task seen twice makes the Meta-NTK singular: without a ridge the solve is noise
    twice = TaskSet(tasks.train + tasks.train[:1], tasks.test)
    gram = depth_sweep(NetSpec(depth=2), twice.points, depths=[2])[2]
    with pytest.raises(BridgeError, match="raise the outer ridge \\(`outer_ridge`\\) to at least") as err:
        predict("anil", twice, gram, PredictorConfig(outer_ridge=0.0))
    assert "\n" not in str(err.value)
    out = predict("anil", twice, gram, PredictorConfig(outer_ridge=1e-6))
    assert np.all(np.isfinite(out))


def test_every_method_shares_one_signature(setting):
    tasks, grams = setting
    for method in METHODS:
        out = predict(method, tasks, grams[3], PredictorConfig())
        assert out.shape == (len(tasks.test), FAMILY.n_query, 1) and np.all(np.isfinite(out))


def test_discrete_outer_steps_match_explicit_gradient_descent(setting):
    """outer_steps = S: S steps of size eta t / S on the training queries, checked for NTK
    regression against the explicit iteration f <- f - lr Theta(Q, Q) (f - Y)."""
    tasks, grams = setting
    gram, lr, steps = grams[1], 0.01, 40
    qi = tasks.train_q.reshape(-1)
    y = tasks.train_y_query().reshape(-1, 1)
    theta_qq = gram.theta[np.ix_(qi, qi)]
    alpha = np.zeros_like(y)                     # f(.) = Theta(., Q) alpha
    for _ in range(steps):
        alpha = alpha - lr * (theta_qq @ alpha - y)
    want = np.stack([gram.theta[np.ix_(q, qi)] @ alpha for q in tasks.test_q])
    cfg = PredictorConfig(outer_time=lr * steps, outer_steps=steps)
    np.testing.assert_allclose(predict("ntk", tasks, gram, cfg), want, rtol=1e-10)
    flow = predict("ntk", tasks, gram, PredictorConfig(outer_time=lr * steps))
    assert np.linalg.norm(flow - want) > 1e-6 * np.linalg.norm(want)      # discretisation is visible
    fine = predict("ntk", tasks, gram, PredictorConfig(outer_time=lr * steps, outer_steps=100_000))
    np.testing.assert_allclose(fine, flow, rtol=1e-4)
    with pytest.raises(BridgeError, match="outer learning rate .* diverges"):
        predict("anil", tasks, gram, PredictorConfig(outer_time=100.0, outer_steps=2))
