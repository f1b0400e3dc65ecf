"""Pure GBML cores: MAML meta-gradient vs finite differences, ridge and ProtoNet closed forms."""

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest

from ntk_bridge.engine.precision import float64 as enable_x64
from ntk_bridge.train import gbml_core as core  # noqa: E402


def _mlp_params(key, sizes, dtype):
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        params.append({"w": jax.random.normal(k1, (a, b), dtype) / np.sqrt(a),
                       "b": 0.1 * jax.random.normal(k2, (b,), dtype)})
    return params


def _mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def _loss(params, x, y):
    logits = _mlp(params, x)
    return core.cross_entropy(logits, y), {"logits": logits}


def _task(key, dtype, n_way=3, k=2, q=4, d=4):
    ks = jax.random.split(key, 4)
    sx = jax.random.normal(ks[0], (n_way * k, d), dtype)
    qx = jax.random.normal(ks[1], (n_way * q, d), dtype)
    sy = jnp.repeat(jnp.arange(n_way), k)
    qy = jnp.repeat(jnp.arange(n_way), q)
    return (sx, sy), (qx, qy)


def _meta(params, support, query, **kw):
    return core.maml_meta_loss(_loss, params, support, query, steps=3, lr=0.5, **kw)[0]


@pytest.mark.slow
def test_maml_second_order_gradient_matches_central_differences():
    """grad of the meta-loss (3 inner steps) . v == (L(p + h v) - L(p - h v)) / 2h.

    Central differences have truncation error O(h^2 |L'''|) and round-off O(eps / h); with
    float64, h = 1e-5 gives both below ~1e-9, so a relative tolerance of 1e-6 leaves a wide
    margin while first-order MAML (which drops the Hessian terms) is off by far more.
    """
    with enable_x64():
        dt = jnp.float64
        key = jax.random.PRNGKey(0)
        params = _mlp_params(key, [4, 6, 3], dt)
        support, query = _task(jax.random.PRNGKey(1), dt)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        vkeys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
        v = jax.tree_util.tree_unflatten(
            treedef, [jax.random.normal(k, x.shape, dt) for k, x in zip(vkeys, leaves)])
        h = 1e-5
        shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * h * d, params, v)  # noqa: E731
        fd = (_meta(shift(1.0), support, query) - _meta(shift(-1.0), support, query)) / (2 * h)

        def directional(**kw):
            g = jax.grad(lambda p: _meta(p, support, query, **kw))(params)
            return sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                      jax.tree_util.tree_leaves(v)))

        second = directional()
        first = directional(first_order=True)
        remat = directional(remat=True)
        assert abs(float(second) - float(fd)) <= 1e-6 * max(1.0, abs(float(fd)))
        # remat changes memory, not math
        assert abs(float(remat) - float(second)) <= 1e-10 * max(1.0, abs(float(second)))
        # the check can fail: first order differs from the true gradient by far more than tol
        assert abs(float(first) - float(fd)) > 1e-4 * max(1.0, abs(float(fd)))


def test_inner_adapt_is_plain_gradient_descent():
    """One inner step equals p - lr * grad L_support(p) computed by hand."""
    params = _mlp_params(jax.random.PRNGKey(3), [4, 5, 3], jnp.float32)
    (sx, sy), _ = _task(jax.random.PRNGKey(4), jnp.float32)
    adapted, _ = core.inner_adapt(lambda p: _loss(p, sx, sy), params, steps=1, lr=0.3)
    g = jax.grad(lambda p: _loss(p, sx, sy)[0])(params)
    expect = jax.tree_util.tree_map(lambda p, gg: p - 0.3 * gg, params, g)
    for a, b in zip(jax.tree_util.tree_leaves(adapted), jax.tree_util.tree_leaves(expect)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        core.inner_adapt(lambda p: _loss(p, sx, sy), params, steps=0, lr=0.3)


def test_ridge_head_equals_closed_form_primal_and_sklearn():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    n_way, k, d, lam = 5, 3, 7, 0.7
    x = rng.normal(size=(n_way * k, d))
    y = np.repeat(np.arange(n_way), k)
    rng.shuffle(y)
    with enable_x64():
        w = np.asarray(core.ridge_weights(jnp.asarray(x), jnp.asarray(y), n_way, lam))
        q = rng.normal(size=(4, d))
        logits = np.asarray(core.ridge_logits(jnp.asarray(x), jnp.asarray(y), jnp.asarray(q),
                                              n_way, lam, scale=2.5, bias=-0.3))
    yy = np.eye(n_way)[y]
    primal = np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ yy)
    np.testing.assert_allclose(w, primal, rtol=1e-10, atol=1e-12)
    sk = Ridge(alpha=lam, fit_intercept=False).fit(x, yy)
    np.testing.assert_allclose(w, sk.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(logits, 2.5 * q @ primal - 0.3, rtol=1e-10, atol=1e-12)


def test_protonet_logits_are_negative_squared_distances():
    rng = np.random.default_rng(1)
    n_way, k, d = 4, 3, 6
    x = rng.normal(size=(n_way * k, d)).astype(np.float32)
    y = np.tile(np.arange(n_way), k)
    q = rng.normal(size=(5, d)).astype(np.float32)
    logits = np.asarray(core.protonet_logits(jnp.asarray(x), jnp.asarray(y), jnp.asarray(q),
                                             n_way))
    protos = np.stack([x[y == c].mean(0) for c in range(n_way)])
    expect = -((q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(logits, expect, rtol=1e-5, atol=1e-5)
    assert logits.shape == (5, n_way)
