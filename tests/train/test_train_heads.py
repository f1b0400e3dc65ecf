"""Test-time heads: batched logistic regression vs scikit-learn, prototypes and ridge vs numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression  # noqa: E402

from ntk_bridge.stats import mean_ci  # noqa: E402
from ntk_bridge.train.heads import l2_normalize, logreg_logits, prototype_logits, ridge_logits  # noqa: E402


def realish_features(episodes, n_way, shots, query, dim, seed):
    """Episodes of L2-normalised features shaped like a trained backbone's: non-negative
    (post-ReLU), sparse-ish, a class signal of varying strength per episode plus noise."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(episodes, n_way, dim)))
    strength = rng.uniform(0.3, 1.2, size=(episodes, 1, 1))
    ys = np.tile(np.repeat(np.arange(n_way), shots), (episodes, 1))
    yq = np.tile(np.repeat(np.arange(n_way), query), (episodes, 1))

    def draw(y):
        base = np.take_along_axis(centres, y[..., None], 1) * strength
        x = np.maximum(base + rng.normal(size=base.shape), 0.0) + 0.01  # never all-zero
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    return draw(ys).astype(np.float32), ys, draw(yq).astype(np.float32), yq


@pytest.mark.parametrize("shots,dim,episodes", [(1, 64, 200), (5, 64, 200), (5, 8, 60)])
@pytest.mark.slow
def test_logreg_matches_sklearn(shots, dim, episodes):
    """200 episodes for the two paper shot counts (D > S: solved in the span of the support);
    D < S exercises the direct path."""
    n_way, query, c = 5, 15, 3.0
    xs, ys, xq, yq = realish_features(episodes, n_way, shots, query, dim, seed=shots + dim)
    logits = np.asarray(logreg_logits(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, c))
    ours = (logits.argmax(-1) == yq).mean(-1)
    theirs, max_gap = np.empty(episodes), 0.0
    for e in range(episodes):
        clf = LogisticRegression(C=c, max_iter=2000, tol=1e-6).fit(xs[e], ys[e])
        theirs[e] = (clf.predict(xq[e]) == yq[e]).mean()
        d = clf.decision_function(xq[e])
        # logits are defined up to one constant per query (the softmax is shift invariant)
        gap = np.abs((d - d.mean(1, keepdims=True)) - (logits[e] - logits[e].mean(1, keepdims=True))).max()
        max_gap = max(max_gap, gap)
    assert abs(100 * ours.mean() - 100 * theirs.mean()) <= 0.2
    assert max_gap < 2e-2, max_gap  # same minimiser, not only the same accuracy
    assert 30 < 100 * ours.mean() < 100  # a non-trivial problem


def test_logreg_is_scale_aware_and_regularised():
    # with C -> small the weights vanish and all classes tie (uniform softmax)
    xs, ys, xq, _ = realish_features(4, 3, 2, 2, 6, seed=1)
    logits = np.asarray(logreg_logits(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), 3, 1e-6))
    assert np.abs(logits - logits.mean(-1, keepdims=True)).max() < 1e-4


def test_prototype_and_ridge_heads_match_numpy():
    rng = np.random.default_rng(0)
    e, n_way, shots, q, d = 3, 4, 2, 3, 5
    xs = rng.normal(size=(e, n_way * shots, d)).astype(np.float32)
    ys = np.tile(np.repeat(np.arange(n_way), shots), (e, 1))
    xq = rng.normal(size=(e, n_way * q, d)).astype(np.float32)
    proto = np.asarray(prototype_logits(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way))
    ridge = np.asarray(ridge_logits(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, 0.5))
    for i in range(e):
        c = np.stack([xs[i][ys[i] == k].mean(0) for k in range(n_way)])
        want = -((xq[i][:, None] - c[None]) ** 2).sum(-1)
        np.testing.assert_allclose(proto[i], want, rtol=1e-4, atol=1e-4)
        y1h = np.eye(n_way)[ys[i]]
        w = xs[i].T @ np.linalg.solve(xs[i] @ xs[i].T + 0.5 * np.eye(len(xs[i])), y1h)
        np.testing.assert_allclose(ridge[i], xq[i] @ w, rtol=1e-3, atol=1e-3)


def test_l2_normalize_and_ci():
    x = jnp.asarray([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(l2_normalize(x)), [[0.6, 0.8], [0.0, 0.0]])
    accs = np.array([0.5, 1.0, 0.75, 0.75])
    m, ci = mean_ci(100 * accs, ddof=0)   # the episode evaluation convention: per-episode %, std ddof 0
    assert m == pytest.approx(75.0)
    assert ci == pytest.approx(3.182446 * np.std(100 * accs) / 2.0, rel=1e-6)   # t(0.975, 3), ddof 0


def test_heads_keep_float32_when_float64_is_enabled():
    """A caller may run JAX in float64 (the kernel side does, inside its calls); the heads must still run on
    float32 features (a float64 step constant once broke the Newton loop's carry)."""
    import importlib

    from ntk_bridge.engine.precision import float64 as enable_x64
    from ntk_bridge.train import heads

    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 5, 8)).astype(np.float32)
    q = rng.normal(size=(3, 7, 8)).astype(np.float32)
    y = np.tile(np.arange(5), (3, 1))
    with enable_x64():
        importlib.reload(heads)          # module-level constants are now created in float64
        out = jax.jit(lambda a, b, c: heads.logreg_logits(a, b, c, 5))(s, y, q)
    importlib.reload(heads)
    assert out.dtype == np.float32 and out.shape == (3, 7, 5) and np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.slow
def test_logreg_stops_converged_and_agrees_with_converged_sklearn(shots):
    """On episodes where scikit-learn's L-BFGS converges (tol 1e-6, fewer iterations than its
    cap), the Newton head stops on its own test -- the largest gradient entry of scikit-learn's
    scaled objective at most tol = 1e-4 -- before its step cap, and predicts the same class on
    >= 99.5 % of queries."""
    from ntk_bridge.train.heads import LOGREG_TOL, logreg_fit

    n_way, query, c, episodes, cap = 5, 15, 3.0, 150, 50
    xs, ys, xq, yq = realish_features(episodes, n_way, shots, query, 64, seed=40 + shots)
    logits, gmax, steps = logreg_fit(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, c, cap)
    gmax, steps = np.asarray(gmax), np.asarray(steps)
    assert LOGREG_TOL == 1e-4
    assert np.all(gmax <= LOGREG_TOL), gmax.max()
    assert np.all(steps < cap) and np.all(steps >= 1), (steps.min(), steps.max())
    pred_sk = np.empty_like(yq)
    for e in range(episodes):
        clf = LogisticRegression(C=c, tol=1e-6, max_iter=5000).fit(xs[e], ys[e])
        assert clf.n_iter_.max() < 5000  # scikit-learn converged on this episode
        pred_sk[e] = clf.predict(xq[e])
    agree = (np.asarray(logits).argmax(-1) == pred_sk).mean()
    assert agree >= 0.995, agree


def test_logreg_gradient_measure_is_the_true_gradient():
    """The reported exit measure equals max |grad| / (C S) of C sum CE + 0.5 ||W||^2 computed
    in numpy at the head's own solution (recovered in full dimension, D < S: no span reduction),
    and a cap of one step leaves it above the tolerance (the head does not report convergence it
    did not reach)."""
    from ntk_bridge.train.heads import logreg_fit

    n_way, c = 3, 3.0
    xs, ys, _, _ = realish_features(6, n_way, 4, 1, 5, seed=3)   # S = 12 > D = 5
    # queries = [I; 0]: the logits of e_j minus those of 0 are W's columns, those of 0 are b
    probe = np.concatenate([np.eye(5), np.zeros((1, 5))]).astype(np.float32)
    xq = np.broadcast_to(probe, (6, 6, 5)).copy()
    logits, gmax, _ = logreg_fit(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, c)
    logits = np.asarray(logits, np.float64)
    for e in range(6):
        b = logits[e, 5]
        w = (logits[e, :5] - b).T                                # (K, D)
        p = np.exp(xs[e] @ w.T + b)
        p /= p.sum(1, keepdims=True)
        y1h = np.eye(n_way)[ys[e]]
        grad = np.concatenate([c * (p - y1h).T @ xs[e] + w, c * (p - y1h).sum(0)[:, None]], axis=1)
        want = np.abs(grad).max() / (c * len(xs[e]))
        assert float(gmax[e]) == pytest.approx(want, rel=0.05, abs=2e-6)
    _, gmax1, steps1 = logreg_fit(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, c, 1)
    assert np.all(np.asarray(steps1) == 1) and np.all(np.asarray(gmax1) > 1e-4)
