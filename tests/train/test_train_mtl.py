"""MTL head bank: logits against a numpy reference, the logit scale (fixed or learnt), config checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest

from ntk_bridge.errors import BridgeError  # noqa: E402
from ntk_bridge.train.algorithms import MTL, PooledMTL, body_apply_train  # noqa: E402
from ntk_bridge.train.config import TrainConfig, from_dict  # noqa: E402
from ntk_bridge.train.models import build_backbone  # noqa: E402

N_BASE, T, N_WAY, PER = 11, 2, 3, 2


def _batch():
    rng = np.random.default_rng(0)
    classes = np.stack([rng.choice(N_BASE, N_WAY, replace=False) for _ in range(T)]).astype(np.int32)
    y = np.broadcast_to(np.repeat(np.arange(N_WAY), PER), (T, N_WAY * PER)).astype(np.int32)
    x = rng.normal(size=(T, N_WAY * PER, 16, 16, 1)).astype(np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y), "classes": jnp.asarray(classes)}


def _state(**cfg):
    config = TrainConfig(channels=4, augment=False, **cfg)
    algo = MTL() if config.algorithm == "mtl" else PooledMTL()
    state = algo.init(jax.random.PRNGKey(1), build_backbone("conv4", channels=4), _batch(), config, N_BASE)
    return algo, state


def _reference_loss(state, batch, key, scale, normalize, per_task=False):
    """Cross-entropy of ``scale * phi W[classes]^T`` computed in numpy from the train-mode features
    (batch norm over all tasks at once, or over each task alone with ``per_task``; Conv-4 draws
    nothing from the key)."""
    x = batch["x"]
    if per_task:
        feats = jnp.stack([body_apply_train(state, state.params["body"], x[t], key)[0] for t in range(T)])
    else:
        feats, _ = body_apply_train(state, state.params["body"], x.reshape((-1,) + x.shape[2:]), key)
    f = np.asarray(feats, np.float64).reshape(T, N_WAY * PER, -1)
    if normalize:
        f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    w = np.asarray(state.params["head"], np.float64)
    losses = []
    for t in range(T):
        logits = scale * f[t] @ w[np.asarray(batch["classes"][t])].T  # row k = head of classes[t, k]
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        losses.append(-logp[np.arange(logits.shape[0]), np.asarray(batch["y"][t])])
    return float(np.mean(losses))


@pytest.mark.parametrize("algorithm", ["mtl", "mtl-pooled"])
@pytest.mark.parametrize("scale,learn,normalize", [(1.0, False, True), (10.0, False, True),
                                                   (10.0, True, True), (3.0, False, False)])
def test_mtl_loss_matches_numpy_with_logit_scale(scale, learn, normalize, algorithm):
    algo, state = _state(logit_scale=scale, learn_logit_scale=learn, normalize_features=normalize,
                         algorithm=algorithm)
    assert ("scale" in state.params) == learn
    batch, key = _batch(), jax.random.PRNGKey(2)
    loss, _ = algo.loss(state.params, state, batch, key)
    ref = _reference_loss(state, batch, key, scale, normalize, per_task=algorithm == "mtl")
    assert float(loss) == pytest.approx(ref, rel=1e-4)


def test_scale_changes_the_loss_and_a_learnt_scale_is_trained():
    batch, key = _batch(), jax.random.PRNGKey(2)
    a1, s1 = _state(logit_scale=1.0)
    a10, s10 = _state(logit_scale=10.0)
    # same initial weights (same key), so only the scale differs
    l1 = float(a1.loss(s1.params, s1, batch, key)[0])
    l10 = float(a10.loss(s10.params, s10, batch, key)[0])
    assert l1 != pytest.approx(l10, rel=1e-3)
    # with |logits| <= |W_k| ~ 0.58 at scale 1 the loss is close to log(n_way)
    assert abs(l1 - np.log(N_WAY)) < 0.6

    algo, state = _state(logit_scale=10.0, learn_logit_scale=True, lr=0.01)
    new, metrics = jax.jit(algo.train_step)(state, batch, key)
    assert np.isfinite(float(metrics["loss"]))
    assert float(new.params["scale"]) != pytest.approx(10.0, abs=1e-6)
    assert float(new.params["scale"]) == pytest.approx(10.0, abs=0.05)  # one RAdam step of lr 0.01


def test_logit_scale_config_is_typed_and_validated():
    cfg = TrainConfig()
    assert cfg.logit_scale == 1.0 and cfg.learn_logit_scale is False  # default = plain logits
    assert from_dict({"logit_scale": 10}).logit_scale == 10.0  # an integer is a number
    for bad in (0.0, -1.0):
        with pytest.raises(BridgeError) as err:
            TrainConfig(logit_scale=bad)
        assert "logit_scale must be > 0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BridgeError) as err:
        from_dict({"logit_scale": "ten"})
    assert "'logit_scale' must be a number" in str(err.value)
    with pytest.raises(BridgeError) as err:
        from_dict({"learn_logit_scale": 1})
    assert "'learn_logit_scale' must be true/false" in str(err.value)


def test_run_saved_before_logit_scale_existed_stays_resumable():
    from ntk_bridge.train.config import incompatible_fields
    cfg = TrainConfig()
    saved = {k: v for k, v in cfg.to_dict().items() if k not in ("logit_scale", "learn_logit_scale")}
    assert incompatible_fields(saved, cfg) == []
    assert incompatible_fields(saved, cfg.replace(logit_scale=10.0)) == ["logit_scale"]
