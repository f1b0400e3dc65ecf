"""The paper's MTL as its authors train it (issue 31, docs/mtl_faithful.md): each faithful setting
pinned against an independent reference -- head-init factor, batch norm per task, the DropBlock
ramp, dropout in ResNet-12's first two blocks, images per class decoupled from the test shots,
fresh validation episodes, the plateau / early-stop counts, and the packaged per-data-set values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.train_data import synthetic_data, tiny_config  # tests/ on sys.path (conftest.py)

from ntk_bridge.errors import BridgeError
from ntk_bridge.train.algorithms import MTL, PooledMTL, body_apply_train, dropblock_scale, fold_bn_updates
from ntk_bridge.train.config import TrainConfig, load_config
from ntk_bridge.train.loop import evaluate_state, init_state, new_loop_state, update_on_validation
from ntk_bridge.train.models import BN_MOMENTUM, ResBlock, build_backbone
from ntk_bridge.train.options import MTLOptions


def _task_batch(t=2, n_way=3, per=4, size=16, offsets=(0.0, 3.0), scales=(1.0, 2.0), n_base=11, seed=0):
    """``t`` tasks whose images come from different distributions (task i: offsets[i] + scales[i] * N(0, 1))."""
    rng = np.random.default_rng(seed)
    x = np.stack([offsets[i] + scales[i] * rng.normal(size=(n_way * per, size, size, 1)) for i in range(t)])
    classes = np.stack([rng.choice(n_base, n_way, replace=False) for _ in range(t)])
    y = np.broadcast_to(np.repeat(np.arange(n_way), per), (t, n_way * per))
    return {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.int32), "classes": jnp.asarray(classes, jnp.int32)}


def _init(algorithm, n_base=11, n_way=3, dim_channels=4, **opts):
    config = TrainConfig(channels=dim_channels, n_way=n_way, augment=False, algorithm=algorithm,
                         algorithm_options=opts or None)
    algo = MTL() if algorithm == "mtl" else PooledMTL()
    state = algo.init(jax.random.PRNGKey(1), build_backbone("conv4", channels=dim_channels), _task_batch(n_way=n_way),
                      config, n_base)
    return algo, state


# ------------------------------------------------------------------ head initialisation

def test_head_init_is_the_plain_init_times_sqrt_n_base_over_n_way():
    """lightning_mtl.py:119-121: U(+-1/sqrt(D)) then x sqrt(n_base / train_ways); same key -> exact ratio."""
    for n_base, n_way in ((64, 5), (351, 5), (11, 3)):
        _, faithful = _init("mtl", n_base=n_base, n_way=n_way)
        _, pooled = _init("mtl-pooled", n_base=n_base, n_way=n_way)
        ratio = np.asarray(faithful.params["head"]) / np.asarray(pooled.params["head"])
        np.testing.assert_allclose(ratio, math.sqrt(n_base / n_way), rtol=1e-5)


def test_head_row_norm_matches_the_uniform_law():
    """Row norm of U(-a, a)^D is about a sqrt(D / 3); a = sqrt(n_base / 5) / sqrt(D) -> sqrt(n_base / 15)
    (mini-ImageNet, D = 640: 2.07; the plain init: 0.577). Relative sd of a row's norm is
    ~ 1.5 sqrt(4 / (45 D)) = 1.8 %, so the mean over 64 rows is within 1 % for every seed."""
    algo = MTL()
    for seed in range(3):
        head = np.asarray(algo.init_head(jax.random.PRNGKey(seed), 64, 640, 5))
        norms = np.linalg.norm(head, axis=1)
        assert norms.mean() == pytest.approx(math.sqrt(64 / 15), rel=0.01)
        assert np.abs(head).max() <= math.sqrt(64 / 5) / math.sqrt(640) + 1e-7


# ------------------------------------------------------------------ batch norm per task

def test_fold_bn_updates_equals_sequential_updates():
    rng = np.random.default_rng(0)
    m = BN_MOMENTUM
    old = {"a": {"mean": jnp.asarray(rng.normal(size=5), jnp.float32)}}
    batches = rng.normal(size=(4, 5))
    per_task = {"a": {"mean": jnp.asarray(m * np.asarray(old["a"]["mean"]) + (1 - m) * batches, jnp.float32)}}
    r = np.asarray(old["a"]["mean"], np.float64)
    for b in batches:  # the reference: one update per task, in order
        r = m * r + (1 - m) * b
    np.testing.assert_allclose(np.asarray(fold_bn_updates(old, per_task, m)["a"]["mean"]), r, rtol=1e-5, atol=1e-6)


def test_per_task_batch_norm_uses_each_tasks_own_statistics():
    """Two tasks with different inputs: the faithful features equal each task run alone in train mode
    (its own batch statistics), differ from the pooled forward, and the running averages equal the two
    per-task updates applied in order."""
    batch = _task_batch()
    key = jax.random.PRNGKey(5)
    algo, state = _init("mtl")
    feats, stats = algo.body_features(state, state.params["body"], batch["x"], key)
    alone, s = [], state
    for t in range(2):  # sequential reference: each task alone, the running stats carried over
        f, new = body_apply_train(s, s.params["body"], batch["x"][t], key)
        alone.append(f)
        s = s.replace(batch_stats=new)
    np.testing.assert_allclose(np.asarray(feats), np.stack([np.asarray(f) for f in alone]), rtol=1e-4, atol=1e-5)
    for got, want in zip(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(s.batch_stats)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    palgo, pstate = _init("mtl-pooled")
    pooled, _ = palgo.body_features(pstate, pstate.params["body"], batch["x"], key)
    assert np.abs(np.asarray(pooled) - np.asarray(feats)).max() > 0.1  # pooled statistics differ


# ------------------------------------------------------------------ DropBlock ramp and dropout

def test_dropblock_scale_at_forward_pass_k():
    """models/resnet.py:161: rate = 0.1 min(1, n / 40000), n = forward passes before this one
    (6 per training step, 400 per validation, a validation every 267 steps)."""
    args = (6, 400, 267, 40000)
    assert float(dropblock_scale(0, 0, *args)) == 0.0
    assert float(dropblock_scale(100, 2, *args)) == pytest.approx((600 + 2) / 40000)
    assert float(dropblock_scale(534, 0, *args)) == pytest.approx((6 * 534 + 2 * 400) / 40000)
    assert float(dropblock_scale(266, 5, *args)) == pytest.approx((6 * 266 + 5) / 40000)  # before the 1st validation
    assert float(dropblock_scale(10**6, 0, *args)) == 1.0
    assert float(dropblock_scale(3, 1, 6, 400, 267, 0)) == 1.0  # no ramp: full rate
    # the step where the full rate is first reached: 6 s + 400 floor(s / 267) >= 40000
    s = next(s for s in range(10000) if 6 * s + 400 * (s // 267) >= 40000)
    assert float(dropblock_scale(s, 0, *args)) == 1.0 and float(dropblock_scale(s - 1, 0, *args)) < 1.0


def _resnet_outputs(model, x, keys, drop_scale=1.0):
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return [np.asarray(model.apply(variables, x, train=True, drop_scale=drop_scale, rngs={"dropout": k},
                                   mutable=["batch_stats"])[0]) for k in keys]


def test_ramped_dropblock_is_off_at_scale_zero_and_on_at_one():
    model = build_backbone("resnet12", channels=4, drop_rate=0.5, block_size=2, dropout=0.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 1)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    off = _resnet_outputs(model, x, keys, drop_scale=0.0)
    on = _resnet_outputs(model, x, keys, drop_scale=1.0)
    np.testing.assert_array_equal(off[0], off[1])   # rate 0: no randomness
    assert np.abs(on[0] - on[1]).max() > 1e-3      # rate 0.5: the key matters


def test_plain_dropout_in_the_first_two_blocks():
    """models/resnet.py:158-165, 223-224: F.dropout(p) after the pool of blocks 1-2: about p of the
    units zeroed, the rest scaled by 1 / (1 - p); blocks 3-4 have none (their rate is DropBlock's)."""
    p = 0.1
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 16, 3)), jnp.float32)
    block = ResBlock(32, 0.0, 1, dropout=p)
    variables = block.init(jax.random.PRNGKey(0), x, train=False)
    plain = np.asarray(ResBlock(32, 0.0, 1).apply(variables, x, train=True, mutable=["batch_stats"])[0])
    dropped = np.asarray(block.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)},
                                     mutable=["batch_stats"])[0])
    live = plain != 0
    zeroed = (dropped == 0) & live
    n = live.sum()  # ~16k units: the fraction is within 4 sd = 4 sqrt(p (1 - p) / n) < 1 %
    assert abs(zeroed.sum() / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(dropped[live & ~zeroed], plain[live & ~zeroed] / (1 - p), rtol=1e-5)
    # in the whole network (DropBlock off): exact zeros after blocks 1-2 only (LeakyReLU + max-pool give none)
    net = build_backbone("resnet12", channels=8, drop_rate=0.0, dropout=p)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 1)), jnp.float32)
    _, inter = net.apply(net.init(jax.random.PRNGKey(0), xs, train=False), xs, train=True,
                         rngs={"dropout": jax.random.PRNGKey(2)}, mutable=["batch_stats", "intermediates"],
                         capture_intermediates=lambda mdl, _: isinstance(mdl, ResBlock))
    zeros = [float((np.asarray(inter["intermediates"][f"ResBlock_{i}"]["__call__"][0]) == 0).mean()) for i in range(4)]
    assert zeros[0] > p / 2 and zeros[1] > p / 2 and zeros[2] == 0.0 and zeros[3] == 0.0


# ------------------------------------------------------------------ task composition, validation, schedule

def test_images_per_class_is_decoupled_from_the_test_shots():
    for shots in (1, 5):
        faithful = TrainConfig(shots=shots, train_query=15, algorithm="mtl")
        assert faithful.n_per_class == 10  # train.py:109: train_shots + train_queries = 5 + 5
        assert TrainConfig(shots=shots, train_query=15, algorithm="mtl-pooled").n_per_class == shots + 15
    with pytest.raises(BridgeError, match="images_per_class"):
        TrainConfig(algorithm="mtl", algorithm_options={"images_per_class": -1})


def test_the_task_batch_holds_images_per_class_images():
    from ntk_bridge.train.loop import batch_indices
    config = tiny_config(algorithm_options={"images_per_class": 5}, shots=1, train_query=2)
    idx = batch_indices(config, synthetic_data().train.labels, 0, episodic=False)
    assert idx["idx"].shape == (config.meta_batch, config.n_way * 5)


def test_fresh_validation_episodes_change_with_the_step():
    data = synthetic_data()
    for fresh in (False, True):
        config = tiny_config(val_fresh=fresh)
        algorithm, _, state, _ = init_state(config, data)
        a = evaluate_state(config, algorithm, state, data, "val", step=2)[0].mean
        b = evaluate_state(config, algorithm, state, data, "val", step=4)[0].mean
        again = evaluate_state(config, algorithm, state, data, "val", step=4)[0].mean
        assert b == again                      # a pure function of seed and step
        assert (a != b) == fresh               # the same episodes unless fresh (same state)


def test_plateau_cut_at_the_fifth_bad_epoch_and_stop_after_fifteen():
    """ReduceLROnPlateau(patience=4) cuts when num_bad_epochs > 4 (the 5th); EarlyStopping(patience=15)."""
    config = TrainConfig(plateau_patience=5, early_stop_patience=15)
    loop = new_loop_state()
    update_on_validation(config, loop, 50.0, 1)
    scales = []
    for i in range(15):
        update_on_validation(config, loop, 40.0, i + 2)
        scales.append(loop.lr_scale)
        assert bool(loop.stop_reason) == (i == 14)
    assert scales[3] == 1.0 and scales[4] == pytest.approx(0.1) and scales[9] == pytest.approx(0.01)


# ------------------------------------------------------------------ packaged configs

# README.md:103-161 of the authors' repository: (tasks per step, images per class) per data set and shots
PAPER = {("miniimagenet", 5): (2, 10), ("miniimagenet", 1): (6, 10), ("tieredimagenet", 5): (1, 40),
         ("tieredimagenet", 1): (2, 40), ("cifarfs", 5): (6, 10), ("cifarfs", 1): (2, 20),
         ("fc100", 5): (6, 10), ("fc100", 1): (1, 5)}


@pytest.mark.parametrize("dataset,shots", sorted(PAPER))
def test_packaged_configs_hold_the_papers_values(dataset, shots):
    cfg = load_config(f"{dataset}_{shots}shot")
    tasks, per_class = PAPER[(dataset, shots)]
    assert cfg.algorithm == "mtl" and cfg.meta_batch == tasks and cfg.n_per_class == per_class
    assert cfg.algorithm_options == MTLOptions(True, True, 40000, per_class)
    assert cfg.eval_every == math.ceil(1600 / tasks) == cfg.checkpoint_every   # one epoch = 1600 tasks
    assert (cfg.val_episodes, cfg.val_query, cfg.val_fresh) == (400, 30, True)
    assert (cfg.plateau_patience, cfg.early_stop_patience, cfg.plateau_factor) == (5, 15, 0.1)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule) == ("radam", 1e-3, 0.0, "plateau")
    assert (cfg.backbone, cfg.drop_rate, cfg.dropout) == ("resnet12", 0.1, 0.1)
    assert cfg.block_size == (2 if dataset in ("cifarfs", "fc100") else 5)
    assert cfg.normalize_features == (dataset != "fc100") and cfg.logit_scale == 1.0
    assert not cfg.learn_logit_scale and cfg.logreg_c == 3.0 and cfg.test_head == "logreg"
    assert cfg.max_steps >= 1000 * cfg.eval_every  # PL's max_epochs 1000: early stopping ends the run
    assert (cfg.test_episodes, cfg.test_query) == (2000, 50)


def test_omniglot_configs_carry_the_rules_to_conv4():
    for shots in (1, 5):
        cfg = load_config(f"omniglot_{shots}shot")
        assert (cfg.backbone, cfg.channels, cfg.meta_batch, cfg.n_per_class) == ("conv4", 64, 6, 10)
        assert cfg.augment and cfg.val_fresh and cfg.normalize_features and cfg.eval_every == 267
