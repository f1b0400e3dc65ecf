"""Few-shot learning algorithms behind one small interface, and the registry that names them.

The interface (explicit state, flax-examples style)
---------------------------------------------------
An algorithm is an object with

- ``name: str`` and ``episodic: bool``. ``episodic=False`` (MTL) trains on *task batches*,
  ``episodic=True`` (MAML, ANIL, ProtoNet, MetaOptNet) on *episodes*. The training loop builds
  the batches, already augmented and normalised (float32), with ``T = config.meta_batch`` tasks:

  - task batch: ``{"x": (T, M, H, W, C), "y": (T, M) int32 in 0..n_way-1,
    "classes": (T, n_way) int32 base-class ids}`` with ``M = n_way * config.n_per_class``;
  - episode batch: ``{"support_x": (T, n_way*shots, H, W, C), "support_y": (T, n_way*shots),
    "query_x": (T, n_way*train_query, H, W, C), "query_y": (T, n_way*train_query),
    "classes": (T, n_way)}`` (labels int32 in 0..n_way-1).

- ``init(key, model, sample_batch, config, n_base_classes) -> TrainState``: build the variables
  (``model`` is the flax backbone mapping images to features; ``n_base_classes`` is the number of
  training classes) and the optimiser, which MUST come from :func:`make_optimizer` so that the
  loop can set the learning rate (plateau / cosine schedules) with :func:`set_learning_rate`.
  Conventions: ``state.apply_fn`` is the backbone's ``apply``; ``state.params["body"]`` the
  backbone's parameters (other keys of ``params`` are the algorithm's, e.g. ``"head"``);
  algorithm-specific settings (inner learning rate, steps, ...) come from the typed, resolved
  ``config.algorithm_options`` (a frozen dataclass per algorithm, :mod:`ntk_bridge.train.options`);
  ``state.batch_stats`` the backbone's batch-norm statistics.
- ``train_step(state, batch, key) -> (state, metrics)``: one optimiser step, jit-able (the loop
  jits it; the batch shapes are fixed). ``key`` is a fresh PRNG key per step (use it for
  DropBlock via ``rngs={"dropout": ...}``). ``metrics`` is a dict of scalars with at least
  ``"loss"`` and ``"acc"`` (training accuracy in [0, 1]). Batch norm in train mode.
- ``predict_episodes(state, support_x, support_y, query_x, n_way) -> logits``: the algorithm's
  own test-time adaptation on ``E`` episodes, ``support_x (E, S, H, W, C)``, ``support_y (E, S)``,
  ``query_x (E, Q, H, W, C)`` -> ``(E, Q, n_way)``; batch norm in evaluation mode (running
  averages). Used with ``test_head="own"``.

The common evaluation (``test_head`` = logreg / proto / ridge) instead uses
:func:`features` (frozen backbone, running batch-norm statistics) on every algorithm.

Registry: ``register(name, factory)``; ``get_algorithm(name)`` calls ``factory()``. The GBML
baselines live in ``ntk_bridge.train.gbml``, imported on first lookup; it registers itself.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ntk_bridge.errors import BridgeError
from ntk_bridge.train.heads import l2_normalize, logreg_logits


class TrainState(train_state.TrainState):
    """flax's TrainState (step, apply_fn, params, tx, opt_state) plus batch-norm statistics."""

    batch_stats: Any = None


class Algorithm(Protocol):
    name: str
    episodic: bool

    def init(self, key: jax.Array, model: nn.Module, sample_batch: dict, config: Any,
             n_base_classes: int) -> TrainState: ...

    def train_step(self, state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]: ...

    def predict_episodes(self, state: TrainState, support_x: jax.Array, support_y: jax.Array,
                         query_x: jax.Array, n_way: int) -> jax.Array: ...


# ---------------------------------------------------------------- optimiser and learning rate

def make_optimizer(config: Any) -> optax.GradientTransformation:
    """RAdam or SGD (Nesterov momentum) with optional decoupled weight decay, wrapped in
    ``optax.inject_hyperparams`` so the learning rate lives in the optimiser state."""

    def build(learning_rate):
        parts = []
        if config.weight_decay > 0:
            parts.append(optax.add_decayed_weights(config.weight_decay))
        if config.optimizer == "radam":
            parts.append(optax.radam(learning_rate))
        elif config.optimizer == "sgd":
            parts.append(optax.sgd(learning_rate, momentum=config.momentum, nesterov=True))
        else:
            raise BridgeError(f"unknown optimizer {config.optimizer!r}; use radam or sgd")
        return optax.chain(*parts)

    return optax.inject_hyperparams(build)(learning_rate=config.lr)


def set_learning_rate(state: TrainState, lr: float) -> TrainState:
    """Return ``state`` with the optimiser's learning rate set to ``lr`` (no recompilation)."""
    opt_state = state.opt_state
    if not hasattr(opt_state, "hyperparams") or "learning_rate" not in opt_state.hyperparams:
        raise BridgeError("the algorithm's optimiser was not built with make_optimizer(config); "
                          "build it there so the learning-rate schedule can act on it")
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, dtype=jnp.asarray(hp["learning_rate"]).dtype)
    return state.replace(opt_state=opt_state._replace(hyperparams=hp))


def get_learning_rate(state: TrainState) -> float:
    return float(state.opt_state.hyperparams["learning_rate"])


# ---------------------------------------------------------------- shared feature extractor

def features(state: TrainState, images: jax.Array) -> jax.Array:
    """Frozen backbone features (N, D) of normalised images (N, H, W, C); batch norm uses the
    running averages (evaluation mode), no DropBlock."""
    variables = {"params": state.params["body"]}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    return state.apply_fn(variables, images, train=False)


def body_init(key: jax.Array, model: nn.Module, images: jax.Array) -> tuple[Any, Any]:
    """Initialise the backbone on ``images`` (N, H, W, C): returns (params, batch_stats)."""
    variables = model.init({"params": key, "dropout": key}, images, train=False)
    return variables["params"], variables.get("batch_stats", {})


def body_apply_train(state: TrainState, body_params: Any, images: jax.Array,
                     key: jax.Array) -> tuple[jax.Array, Any]:
    """Backbone in train mode: (features (N, D), new batch_stats)."""
    feats, updates = state.apply_fn({"params": body_params, "batch_stats": state.batch_stats}, images,
                                    train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return feats, updates["batch_stats"]


# ---------------------------------------------------------------- MTL

def dropblock_scale(step: jax.Array | int, task: jax.Array | int, meta_batch: int, val_episodes: int,
                    eval_every: int, ramp: int) -> jax.Array:
    """The DropBlock ramp (authors' ``models/resnet.py:161``): the fraction of ``drop_rate``
    used by the forward pass of task ``task`` of training step ``step`` (both from 0),
    ``min(1, k / ramp)`` with ``k = meta_batch * step + task + val_episodes * floor(step / eval_every)``
    the forward passes before it (one per training task, one per validation episode, a
    validation after every ``eval_every`` steps); 1 when ``ramp`` is 0 (no ramp)."""
    if ramp <= 0:
        return jnp.ones((), jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    k = meta_batch * step + jnp.asarray(task, jnp.float32) + val_episodes * jnp.floor(step / eval_every)
    return jnp.minimum(1.0, k / ramp)


def fold_bn_updates(old: Any, per_task: Any, momentum: float) -> Any:
    """Running batch-norm statistics after ``T`` updates in task order, from ``per_task``
    (leaves ``(T, ...)``: each task's update ``u_t = m r + (1 - m) b_t`` of the same old
    running value ``r``, as ``vmap`` over tasks returns them):
    ``r_T = m^T r + sum_t m^(T-1-t) (u_t - m r)``, which equals applying
    ``r <- m r + (1 - m) b_t`` for t = 0..T-1 one after another."""

    def fold(r, u):
        t = u.shape[0]
        w = momentum ** jnp.arange(t - 1, -1, -1, dtype=u.dtype)
        return momentum ** t * r + jnp.tensordot(w, u - momentum * r, axes=1)

    return jax.tree_util.tree_map(fold, old, per_task)


class MTL:
    """Multi-task learning with a head bank (Wang et al., 2021), as the authors train it.

    ``params = {"body": backbone, "head": W (n_base_classes, D)}`` (no bias), plus ``"scale"``
    (a scalar) when ``config.learn_logit_scale``. Task ``t`` scores its images with the rows of
    its classes: ``logits_t = s * phi(x) W[classes_t]^T`` with ``phi`` the (optionally
    L2-normalised) features and ``s`` the logit scale (``config.logit_scale``, fixed or learnt);
    the loss is the cross-entropy averaged over the images of a task and over the ``T`` tasks of
    a step. Test-time adaptation: logistic regression on the frozen, normalised features.

    The typed options (:class:`ntk_bridge.train.options.MTLOptions`) choose the paper's training
    (``mtl``, the default) or ours (``mtl-pooled``):

    - head init ``U(-1/sqrt(D), 1/sqrt(D)) * sqrt(n_base / n_way)`` (``scale_head_init``) or
      without the factor;
    - ``per_task_bn``: the backbone runs once per task (``vmap`` over the task axis), so batch
      norm normalises each task with its own statistics, and the running averages take the
      ``T`` per-task updates in order (:func:`fold_bn_updates`); otherwise one forward pass over
      all ``T * M`` images with statistics pooled over the tasks;
    - ``dropblock_ramp``: the DropBlock rate of each forward pass scaled by
      :func:`dropblock_scale`.
    """

    name = "mtl"
    episodic = False

    def __init__(self, normalize: bool = True, logreg_c: float = 3.0, logreg_iters: int = 15):
        from ntk_bridge.train.options import default_options
        self.normalize = normalize
        self.normalize_test = True
        self.logit_scale = 1.0
        self.logreg_c = logreg_c
        self.logreg_iters = logreg_iters
        self.options = default_options(self.name, "")
        self.ramp_counts = (1, 1, 1)  # meta_batch, val_episodes, eval_every (set by init)

    def init(self, key, model, sample_batch, config, n_base_classes):
        self.normalize = config.normalize_features
        self.normalize_test = config.normalize_test_features
        self.logreg_c, self.logreg_iters = config.logreg_c, config.logreg_iters
        self.logit_scale = float(config.logit_scale)
        self.options = config.algorithm_options
        self.ramp_counts = (config.meta_batch, config.val_episodes, config.eval_every)
        k_body, k_head = jax.random.split(key)
        x = sample_batch["x"]
        body, batch_stats = body_init(k_body, model, x.reshape((-1,) + x.shape[2:])[:2])
        dim = jax.eval_shape(lambda: model.apply({"params": body, "batch_stats": batch_stats},
                                                 x[0, :1], train=False)).shape[-1]
        params = {"body": body, "head": self.init_head(k_head, n_base_classes, dim, config.n_way)}
        if config.learn_logit_scale:
            params["scale"] = jnp.asarray(config.logit_scale, jnp.float32)
        return TrainState.create(apply_fn=model.apply, params=params,
                                 tx=make_optimizer(config), batch_stats=batch_stats)

    def init_head(self, key: jax.Array, n_base: int, dim: int, n_way: int) -> jax.Array:
        """The head bank (n_base, dim): a linear layer's default U(-1/sqrt(D), 1/sqrt(D)) (PyTorch's
        ``kaiming_uniform_(a=sqrt(5))``), times ``sqrt(n_base / n_way)`` with ``scale_head_init``."""
        head = jax.random.uniform(key, (n_base, dim), minval=-1.0, maxval=1.0) / jnp.sqrt(dim)
        return head * jnp.sqrt(n_base / n_way) if self.options.scale_head_init else head

    def body_features(self, state, body_params, x, key):
        """Train-mode features (T, M, D) of the task batch ``x`` (T, M, H, W, C) and the new
        batch-norm statistics: per task or pooled (``per_task_bn``), DropBlock ramped."""
        t, m = x.shape[:2]
        ramp = lambda task: dropblock_scale(state.step, task, *self.ramp_counts,  # noqa: E731
                                            self.options.dropblock_ramp)
        if not self.options.per_task_bn:
            feats, new_stats = state.apply_fn(
                {"params": body_params, "batch_stats": state.batch_stats}, x.reshape((t * m,) + x.shape[2:]),
                train=True, drop_scale=ramp(0), rngs={"dropout": key}, mutable=["batch_stats"])
            return feats.reshape(t, m, -1), new_stats["batch_stats"]

        def one(xt, kt, task):
            f, upd = state.apply_fn({"params": body_params, "batch_stats": state.batch_stats}, xt, train=True,
                                    drop_scale=ramp(task), rngs={"dropout": kt}, mutable=["batch_stats"])
            return f, upd["batch_stats"]

        feats, per_task = jax.vmap(one)(x, jax.random.split(key, t), jnp.arange(t))
        from ntk_bridge.train.models import BN_MOMENTUM
        return feats, fold_bn_updates(state.batch_stats, per_task, BN_MOMENTUM)

    def loss(self, params, state, batch, key):
        x, y, classes = batch["x"], batch["y"], batch["classes"]
        feats, new_stats = self.body_features(state, params["body"], x, key)
        if self.normalize:
            feats = l2_normalize(feats)
        w = params["head"][classes]  # (T, n_way, D)
        scale = params["scale"] if "scale" in params else self.logit_scale
        logits = scale * jnp.einsum("tmd,tkd->tmk", feats, w)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        acc = (logits.argmax(-1) == y).mean()
        return loss, (new_stats, acc)

    def train_step(self, state, batch, key):
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (loss, (new_stats, acc)), grads = grad_fn(state.params, state, batch, key)
        state = state.apply_gradients(grads=grads, batch_stats=new_stats)
        return state, {"loss": loss, "acc": acc}

    def predict_episodes(self, state, support_x, support_y, query_x, n_way):
        e, s = support_y.shape
        q = query_x.shape[1]
        fs = features(state, support_x.reshape((e * s,) + support_x.shape[2:])).reshape(e, s, -1)
        fq = features(state, query_x.reshape((e * q,) + query_x.shape[2:])).reshape(e, q, -1)
        if self.normalize_test:
            fs, fq = l2_normalize(fs), l2_normalize(fq)
        return logreg_logits(fs, support_y, fq, n_way, self.logreg_c, self.logreg_iters)


class PooledMTL(MTL):
    """``mtl-pooled``: ours, the MTL this project trained before issue 31 (plain head init,
    batch norm pooled over the tasks of a step, no DropBlock ramp, ``shots + train_query``
    images per class): :class:`MTL` with the ``mtl-pooled`` option defaults."""

    name = "mtl-pooled"


# ---------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[[], Algorithm]] = {}
_GBML_MODULE = "ntk_bridge.train.gbml"


def register(name: str, factory: Callable[[], Algorithm]) -> None:
    """Make ``get_algorithm(name)`` return ``factory()``."""
    _REGISTRY[name] = factory


def _load_gbml() -> None:
    try:
        importlib.import_module(_GBML_MODULE)
    except ModuleNotFoundError as err:
        if err.name != _GBML_MODULE:  # a real missing dependency inside gbml must surface
            raise


def known_algorithms() -> list[str]:
    _load_gbml()
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered as ``name`` (a fresh instance)."""
    if name not in _REGISTRY:
        _load_gbml()
    if name not in _REGISTRY:
        raise BridgeError(f"unknown algorithm {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


register("mtl", MTL)
register("mtl-pooled", PooledMTL)
