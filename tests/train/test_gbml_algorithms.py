"""GBML algorithms on a tiny Conv-4: one step lowers the loss, shapes, config errors."""

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np
import optax  # noqa: E402
import pytest

from ntk_bridge.errors import BridgeError  # noqa: E402
from ntk_bridge.train.gbml import GBML_ALGORITHMS, GBMLConfig, make_gbml  # noqa: E402
from ntk_bridge.train.models import Conv4  # noqa: E402
from ntk_bridge.train.options import MAMLOptions  # noqa: E402

N_WAY, K, Q, E, HW = 3, 1, 2, 2, 16


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    # class-dependent means so the episodes are learnable
    means = rng.normal(size=(E, N_WAY, 1, 1, 1)).astype(np.float32)
    sy = np.tile(np.repeat(np.arange(N_WAY), K), (E, 1))
    qy = np.tile(np.repeat(np.arange(N_WAY), Q), (E, 1))
    sx = np.take_along_axis(means, sy[:, :, None, None, None], 1) + \
        0.5 * rng.normal(size=(E, N_WAY * K, HW, HW, 1)).astype(np.float32)
    qx = np.take_along_axis(means, qy[:, :, None, None, None], 1) + \
        0.5 * rng.normal(size=(E, N_WAY * Q, HW, HW, 1)).astype(np.float32)
    return {"support_x": jnp.asarray(sx), "support_y": jnp.asarray(sy),
            "query_x": jnp.asarray(qx), "query_y": jnp.asarray(qy)}


CFG = GBMLConfig(n_way=N_WAY, meta_batch=E, maml=MAMLOptions(inner_steps=1, eval_inner_steps=2, inner_lr=0.1))


@pytest.mark.parametrize("name", GBML_ALGORITHMS)
@pytest.mark.slow
def test_one_step_decreases_loss_on_fixed_batch(name):
    """A small SGD step along the exact gradient lowers the loss (first-order Taylor)."""
    algo = make_gbml(name, CFG)
    batch = _batch()
    state = algo.init(jax.random.PRNGKey(0), Conv4(channels=4), batch, tx=optax.sgd(1e-2))
    key = jax.random.PRNGKey(1)
    loss = jax.jit(lambda s: algo.batch_loss(s.params, s, batch, key)[0])
    before = float(loss(state))
    new, metrics = jax.jit(algo.train_step)(state, batch, key)
    after = float(loss(new))
    assert np.isfinite(before) and np.isfinite(after)
    assert abs(float(metrics["loss"]) - before) < 1e-5
    assert after < before - 1e-6, (name, before, after)
    assert int(new.step) == 1
    # running statistics were updated (features() uses them)
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(new.batch_stats), jax.tree_util.tree_leaves(state.batch_stats))]
    assert max(moved) > 0


@pytest.mark.parametrize("name", GBML_ALGORITHMS)
@pytest.mark.slow
def test_predict_and_features_shapes(name):
    algo = make_gbml(name, CFG)
    batch = _batch(1)
    state = algo.init(jax.random.PRNGKey(0), Conv4(channels=4), batch, tx=optax.adam(1e-3))
    logits = jax.jit(algo.predict_episodes, static_argnums=4)(
        state, batch["support_x"], batch["support_y"], batch["query_x"], N_WAY)
    assert logits.shape == (E, N_WAY * Q, N_WAY)
    assert bool(jnp.all(jnp.isfinite(logits)))
    feats = algo.features(state, batch["query_x"][0])
    assert feats.shape == (N_WAY * Q, 4)
    with pytest.raises(BridgeError, match="n_way"):
        algo.predict_episodes(state, batch["support_x"], batch["support_y"], batch["query_x"], 5)


@pytest.mark.slow
def test_maml_remat_and_first_order_options_reach_the_inner_loop():
    """first_order changes the meta-gradient; remat puts a checkpoint in the computation.
    (Exact equality of remat and plain gradients is checked on a float64 MLP in test_gbml_core.)"""
    batch = _batch(2)
    grads = {}
    for label, kw in {"plain": {}, "fo": {"first_order": True}}.items():
        algo = make_gbml("maml", GBMLConfig(n_way=N_WAY, maml=MAMLOptions(inner_steps=1, inner_lr=0.1, **kw)))
        state = algo.init(jax.random.PRNGKey(0), Conv4(channels=4), batch, tx=optax.adam(1e-3))
        g = jax.jit(jax.grad(lambda p: algo.batch_loss(p, state, batch,
                                                       jax.random.PRNGKey(3))[0]))(state.params)
        grads[label] = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g)])
    scale = np.abs(grads["plain"]).max()
    assert np.abs(grads["fo"] - grads["plain"]).max() > 1e-3 * scale
    for remat in (False, True):
        algo = make_gbml("maml", GBMLConfig(n_way=N_WAY, maml=MAMLOptions(inner_steps=1, remat=remat)))
        state = algo.init(jax.random.PRNGKey(0), Conv4(channels=4), batch, tx=optax.adam(1e-3))
        jaxpr = str(jax.make_jaxpr(lambda p: algo.batch_loss(p, state, batch,
                                                             jax.random.PRNGKey(3))[0])(state.params))
        assert ("checkpoint" in jaxpr or "remat" in jaxpr) == remat


def test_bad_config_and_name_are_one_line_errors():
    with pytest.raises(BridgeError, match="inner_steps"):
        GBMLConfig(maml=MAMLOptions(inner_steps=0))
    with pytest.raises(BridgeError, match="inner_lr"):
        GBMLConfig.from_mapping({"inner_lr": -1.0})
    with pytest.raises(BridgeError, match="meta_batch"):
        GBMLConfig(meta_batch=0)
    with pytest.raises(BridgeError, match="unknown GBML algorithm"):
        make_gbml("reptile")
    cfg = GBMLConfig.from_mapping({"n_way": 3, "backbone": "conv4"})
    assert cfg.n_way == 3


def test_registry_and_run_config():
    """The trainer's registry finds every GBML algorithm; init reads the run config."""
    from ntk_bridge.train.algorithms import get_algorithm, known_algorithms
    from ntk_bridge.train.config import TrainConfig
    assert set(GBML_ALGORITHMS) <= set(known_algorithms())
    algo = get_algorithm("protonet")
    run_cfg = TrainConfig(n_way=N_WAY, shots=K, meta_batch=E, lr=2e-3)
    state = algo.init(jax.random.PRNGKey(0), Conv4(channels=4), _batch(), run_cfg, 10)
    assert algo.config.n_way == N_WAY and algo.config.lr == 2e-3
    state, metrics = jax.jit(algo.train_step)(state, _batch(), jax.random.PRNGKey(1))
    assert set(metrics) >= {"loss", "acc"} and int(state.step) == 1
    with pytest.raises(BridgeError, match="n_way"):
        make_gbml("maml", GBMLConfig(n_way=5)).init(
            jax.random.PRNGKey(0), Conv4(channels=4), _batch(), run_cfg, 10)
