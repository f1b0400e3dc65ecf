"""Gradient-based meta-learning baselines on any flax backbone: MAML, ANIL, ProtoNet,
MetaOptNet-ridge.

All four are *episodic*: a training batch is ``E`` episodes, each a support set
``(S = n_way * k_shot)`` and a query set ``(Q = n_way * q_query)`` of normalised float32 images,
and the loss is the query cross-entropy after the algorithm's own adaptation to the support set:

- ``maml``: linear head on the backbone features; the inner loop takes ``inner_steps``
  plain gradient steps (rate ``inner_lr``) on *all* parameters (body and head) with the
  support loss; the outer (meta) gradient differentiates through the inner loop (second order;
  ``first_order=True`` for FOMAML). ``remat=True`` checkpoints each inner step.
- ``anil``: as MAML but the inner loop adapts the head only; body features are computed once.
- ``protonet``: logits ``-||f_q - c_k||^2`` to the class-mean prototypes ``c_k``.
- ``metaoptnet-ridge``: closed-form ridge head on the support features (R2D2 / MetaOptNet-RR),
  ``logits = s * f_q X^T (X X^T + lam I)^{-1} Y`` with a learned scale ``s`` and a learned
  ridge penalty ``lam`` (both stored as logs, initialised from the config).

Batch norm (a choice every MAML implementation has to make; this is the usual one):

- MAML / ANIL use *batch statistics of the current batch* everywhere: the support set's own
  statistics in each inner step, the query set's own statistics in the outer loss, and the same
  at test time (transductive, as in Finn et al.'s reference code); no running statistics are
  used by their own predictions. The running averages are still updated, from the support pass
  of the un-adapted (meta-learned) network, so that :meth:`features` (``train=False``, running
  statistics) gives a usable frozen body for the shared logistic-regression evaluation.
- ProtoNet / ridge run one train-mode pass over support and query together (one set of batch
  statistics per episode) and update the running averages; at test time they use the running
  statistics (``train=False``), like the MTL body.

Memory: MAML second order stores the activations of every inner step; with many inner steps on
ResNet-12 this is the usual out-of-memory failure. Set ``remat=True`` (recompute each inner step
in the backward pass, same gradient) first, then lower ``meta_batch`` (episodes per step), then
``inner_steps``, or use ``first_order=True``.

The classes implement :mod:`ntk_bridge.train.algorithms`' ``Algorithm`` interface (state is
its ``TrainState``: ``params = {"body", "head"}``, ``batch_stats``, the optimiser from
``make_optimizer(run_config)``) and register themselves under the names above; ``train_step``
and ``predict_episodes`` are pure and jit-able. Note: MAML/ANIL's ``predict_episodes`` uses
batch statistics (transductive), not the running averages (see above). Shapes: support_x (E, S, H, W, C), support_y (E, S) int in 0..n_way-1,
query_x (E, Q, H, W, C), query_y (E, Q).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ntk_bridge.errors import BridgeError
from ntk_bridge.train import gbml_core as core
from ntk_bridge.train.algorithms import TrainState, make_optimizer, register
from ntk_bridge.train.options import MAMLOptions, RidgeOptions
from ntk_bridge.train.parallel import map_episodes

PyTree = Any

GBML_ALGORITHMS = ("maml", "anil", "protonet", "metaoptnet-ridge")


@dataclasses.dataclass(frozen=True)
class GBMLConfig:
    """Hyper-parameters of the GBML baselines: the outer loop here, the algorithm's own options in
    their one home, :mod:`ntk_bridge.train.options` (fields unused by an algorithm are ignored).

    n_way: classes per episode. meta_batch: episodes per optimiser step.
    lr: outer learning rate (Adam). weight_decay: decoupled (AdamW) when > 0.
    maml: the MAML / ANIL inner loop (:class:`~ntk_bridge.train.options.MAMLOptions`: inner_lr,
    inner_steps, eval_inner_steps, first_order, remat). ridge: MetaOptNet-ridge's head
    (:class:`~ntk_bridge.train.options.RidgeOptions`: init_lambda, init_scale, both learned).
    """

    n_way: int = 5
    meta_batch: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    maml: MAMLOptions = MAMLOptions()
    ridge: RidgeOptions = RidgeOptions()

    def __post_init__(self):
        for name in ("n_way", "meta_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BridgeError(f"GBML config field {name} must be an integer >= 1, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0 \
                or not math.isfinite(self.lr):
            raise BridgeError(f"GBML config field lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise BridgeError(f"GBML config field weight_decay must be >= 0, got {self.weight_decay!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "GBMLConfig":
        """Build from a flat dict (e.g. a whole run config): the outer-loop fields by name, the
        options by their own field names (``inner_lr``, ``init_lambda``, ...); other keys ignored."""
        m = dict(mapping)
        names = {f.name for f in dataclasses.fields(cls)} - {"maml", "ridge"}
        def options(kind: type):
            return kind(**{f.name: m[f.name] for f in dataclasses.fields(kind) if f.name in m})
        return cls(**{k: v for k, v in m.items() if k in names}, maml=options(MAMLOptions), ridge=options(RidgeOptions))


def gbml_config_from_run(config: Any) -> GBMLConfig:
    """The GBML hyper-parameters of a run config (``TrainConfig``): ``n_way``, ``meta_batch``,
    ``lr``, ``weight_decay`` from the run, the inner loop / ridge head from its typed
    ``algorithm_options`` (:mod:`ntk_bridge.train.options`); a plain mapping is read by name."""
    if config is None:
        return GBMLConfig()
    if not hasattr(config, "algorithm_options"):
        return GBMLConfig.from_mapping(dict(config))
    base = {k: getattr(config, k) for k in ("n_way", "meta_batch", "lr", "weight_decay")}
    opts = config.algorithm_options
    if isinstance(opts, MAMLOptions):
        base["maml"] = opts
    elif isinstance(opts, RidgeOptions):
        base["ridge"] = opts
    return GBMLConfig(**base)


def _body_apply(apply_fn: Callable, body_params, batch_stats, x, *, train: bool, rng):
    """Backbone features (B, D) and updated batch stats (unchanged when not train / none).

    A train-mode pass without ``rng`` (MAML/ANIL test-time passes with batch statistics) uses a
    fixed dropout key; build MAML/ANIL backbones without DropBlock (``drop_rate=0``, as MAML
    implementations do) so that this key is never used.
    """
    if train and rng is None:
        rng = jax.random.PRNGKey(_EVAL_RNG_SEED)
    variables = {"params": body_params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    rngs = {"dropout": rng} if rng is not None else None
    if train and batch_stats:
        feats, upd = apply_fn(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
        return feats, upd["batch_stats"]
    return apply_fn(variables, x, train=train, rngs=rngs), batch_stats


_EVAL_RNG_SEED = 0


def _linear(head, feats):
    return feats @ head["w"] + head["b"]


class GBMLAlgorithm:
    """Common machinery behind :mod:`ntk_bridge.train.algorithms`' interface: init, one
    optimiser step over a meta-batch of episodes, the algorithm's own test-time prediction.

    ``gbml_config``: the GBML hyper-parameters; ``None`` builds them at :meth:`init` from the
    run config's fields of the same names (``n_way``, ``meta_batch``, ``lr``, ``init_lambda``,
    and ``inner_steps`` etc. if the run config has them), defaults otherwise.
    Subclasses implement ``init_head(feat_dim)``, ``episode_loss(params, apply_fn, batch_stats,
    sx, sy, qx, qy, rng) -> (loss, (logits, new_batch_stats))`` and
    ``episode_logits(state, sx, sy, qx)``.
    """

    name = "gbml"
    episodic = True
    # episodes of a meta-batch one after another (lax.map) instead of vmap: when each episode
    # has its own adapted weights (MAML), vmap turns every conv into a grouped conv, which is
    # about 2x slower on CPU; with shared weights vmap just enlarges the batch
    sequential_episodes = False

    def __init__(self, gbml_config: GBMLConfig | Mapping[str, Any] | None = None):
        if gbml_config is not None and not isinstance(gbml_config, GBMLConfig):
            gbml_config = GBMLConfig.from_mapping(gbml_config)
        self.config = gbml_config

    # ----- state -------------------------------------------------------------------------
    def init(self, key: jax.Array, model: nn.Module, sample_batch: Mapping[str, jax.Array],
             config: Any = None, n_base_classes: int | None = None,
             tx: optax.GradientTransformation | None = None) -> TrainState:
        """Initialise body (on ``sample_batch["support_x"][0]``), head and optimiser.

        ``config``: the run config (``TrainConfig``); the optimiser is
        ``algorithms.make_optimizer(config)`` unless ``tx`` is given. ``n_base_classes`` unused.
        """
        run_n_way = getattr(config, "n_way", None)
        if self.config is None:
            self.config = gbml_config_from_run(config)
        elif run_n_way is not None and run_n_way != self.config.n_way:
            raise BridgeError(f"{self.name}: the GBML config says n_way={self.config.n_way} but the "
                              f"run config says {run_n_way}; make them equal")
        if tx is None:
            if config is None:
                raise BridgeError(f"{self.name}.init needs the run config (for the optimiser) or tx")
            tx = make_optimizer(config)
        images = sample_batch["support_x"][0]
        k_body, k_drop = jax.random.split(key)
        variables = model.init({"params": k_body, "dropout": k_drop}, images, train=False)
        feats = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
        if len(feats.shape) != 2:
            raise BridgeError(f"the backbone must return (batch, features), got shape {feats.shape}")
        params = {"body": variables["params"], "head": self.init_head(int(feats.shape[-1]))}
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                                 batch_stats=variables.get("batch_stats", {}))

    def init_head(self, feat_dim: int) -> PyTree:
        return {}

    # ----- training ----------------------------------------------------------------------
    def batch_loss(self, params, state: TrainState, batch: Mapping[str, jax.Array],
                   key: jax.Array):
        """Mean episode loss over the meta-batch; aux = (mean accuracy, new batch stats)."""
        n_ep = batch["support_x"].shape[0]
        keys = jax.random.split(key, n_ep)

        def one(shared, sx, sy, qx, qy, k):
            loss, (logits, stats) = self.episode_loss(shared[0], state.apply_fn, shared[1],
                                                      sx, sy, qx, qy, k)
            return loss, core.accuracy(logits, qy), stats

        args = (batch["support_x"], batch["support_y"], batch["query_x"], batch["query_y"], keys)
        # episodes are independent: on several devices each maps its own (train.parallel)
        losses, accs, stats = map_episodes(one, (params, state.batch_stats), args, self.sequential_episodes)
        stats = jax.tree_util.tree_map(lambda s: s.mean(axis=0), stats)
        return losses.mean(), (accs.mean(), stats)

    def train_step(self, state: TrainState, batch: Mapping[str, jax.Array], key: jax.Array):
        """One optimiser step on a meta-batch of episodes. Returns (state, {"loss", "acc"})."""
        (loss, (acc, stats)), grads = jax.value_and_grad(self.batch_loss, has_aux=True)(
            state.params, state, batch, key)
        state = state.apply_gradients(grads=grads, batch_stats=stats)
        return state, {"loss": loss, "acc": acc}

    # ----- evaluation --------------------------------------------------------------------
    def features(self, state: TrainState, images: jax.Array) -> jax.Array:
        """Frozen-body features (B, D) with running batch-norm statistics (``train=False``)."""
        return _body_apply(state.apply_fn, state.params["body"], state.batch_stats, images,
                           train=False, rng=None)[0]

    def predict_episodes(self, state: TrainState, support_x, support_y, query_x,
                         n_way: int | None = None) -> jax.Array:
        """The algorithm's own test-time adaptation: logits (E, Q, n_way)."""
        if self.config is None:
            raise BridgeError(f"{self.name}: call init(...) (or pass a GBMLConfig) before predicting")
        if n_way is not None and n_way != self.config.n_way:
            raise BridgeError(f"{self.name} was built for n_way={self.config.n_way} but the "
                              f"episodes are {n_way}-way; set n_way in the config")
        one = lambda a: self.episode_logits(state, *a)  # noqa: E731
        args = (support_x, support_y, query_x)
        return jax.lax.map(one, args) if self.sequential_episodes else jax.vmap(one)(args)

    # subclass API
    def episode_loss(self, params, apply_fn, batch_stats, sx, sy, qx, qy, rng):  # pragma: no cover
        raise NotImplementedError

    def episode_logits(self, state, sx, sy, qx):  # pragma: no cover
        raise NotImplementedError


class MAML(GBMLAlgorithm):
    """MAML (Finn et al. 2017): inner loop on all parameters, second order by default.

    Batch norm: batch statistics of the current batch in the inner loop (support), the outer
    loss (query) and at test time (transductive, as MAML's reference code); see module doc.
    """

    name = "maml"
    sequential_episodes = True

    def init_head(self, feat_dim):
        # zero-initialised linear head; the outer loop learns its initialisation like the body's
        n = self.config.n_way
        return {"w": jnp.zeros((feat_dim, n), jnp.float32), "b": jnp.zeros((n,), jnp.float32)}

    @staticmethod
    def _loss_fn(apply_fn, batch_stats, rng):
        def loss_fn(p, x, y):
            feats, stats = _body_apply(apply_fn, p["body"], batch_stats, x, train=True, rng=rng)
            logits = _linear(p["head"], feats)
            return core.cross_entropy(logits, y), (logits, stats)
        return loss_fn

    def episode_loss(self, params, apply_fn, batch_stats, sx, sy, qx, qy, rng):
        c = self.config
        loss, ((logits, _), (_, stats)) = core.maml_meta_loss(
            self._loss_fn(apply_fn, batch_stats, rng), params, (sx, sy), (qx, qy), c.maml.inner_steps,
            c.maml.inner_lr, first_order=c.maml.first_order, remat=c.maml.remat)
        return loss, (logits, stats)

    def episode_logits(self, state, sx, sy, qx):
        c = self.config
        loss_fn = self._loss_fn(state.apply_fn, state.batch_stats, None)
        adapted, _ = core.inner_adapt(lambda p: loss_fn(p, sx, sy), state.params,
                                      c.maml.eval_inner_steps, c.maml.inner_lr, first_order=True)
        return loss_fn(adapted, qx, jnp.zeros(qx.shape[0], jnp.int32))[1][0]


class ANIL(MAML):
    """ANIL (Raghu et al. 2020): MAML whose inner loop adapts only the linear head (body
    features computed once per set, batch statistics as in MAML)."""

    name = "anil"
    sequential_episodes = False

    def _head_adapt(self, head, fs, sy, steps, first_order, remat):
        def head_loss(h):
            return core.cross_entropy(_linear(h, fs), sy), None
        return core.inner_adapt(head_loss, head, steps, self.config.maml.inner_lr,
                                first_order=first_order, remat=remat)[0]

    def episode_loss(self, params, apply_fn, batch_stats, sx, sy, qx, qy, rng):
        c = self.config
        k1, k2 = jax.random.split(rng)
        fs, stats = _body_apply(apply_fn, params["body"], batch_stats, sx, train=True, rng=k1)
        fq, _ = _body_apply(apply_fn, params["body"], batch_stats, qx, train=True, rng=k2)
        head = self._head_adapt(params["head"], fs, sy, c.maml.inner_steps, c.maml.first_order, c.maml.remat)
        logits = _linear(head, fq)
        return core.cross_entropy(logits, qy), (logits, stats)

    def episode_logits(self, state, sx, sy, qx):
        p, bs = state.params, state.batch_stats
        fs, _ = _body_apply(state.apply_fn, p["body"], bs, sx, train=True, rng=None)
        fq, _ = _body_apply(state.apply_fn, p["body"], bs, qx, train=True, rng=None)
        head = self._head_adapt(p["head"], fs, sy, self.config.maml.eval_inner_steps, True, False)
        return _linear(head, fq)


class _MetricHead(GBMLAlgorithm):
    """Shared pass for metric/closed-form heads: one train-mode pass over support + query in
    training; running batch-norm statistics at test time."""

    def head_logits(self, head, fs, sy, fq):  # pragma: no cover
        raise NotImplementedError

    def episode_loss(self, params, apply_fn, batch_stats, sx, sy, qx, qy, rng):
        x = jnp.concatenate([sx, qx], axis=0)
        feats, stats = _body_apply(apply_fn, params["body"], batch_stats, x, train=True, rng=rng)
        fs, fq = feats[: sx.shape[0]], feats[sx.shape[0]:]
        logits = self.head_logits(params["head"], fs, sy, fq)
        return core.cross_entropy(logits, qy), (logits, stats)

    def episode_logits(self, state, sx, sy, qx):
        fs = self.features(state, sx)
        fq = self.features(state, qx)
        return self.head_logits(state.params["head"], fs, sy, fq)


class ProtoNet(_MetricHead):
    """Prototypical networks (Snell et al. 2017): logits = -squared Euclidean distance."""

    name = "protonet"

    def head_logits(self, head, fs, sy, fq):
        return core.protonet_logits(fs, sy, fq, self.config.n_way)


class MetaOptNetRidge(_MetricHead):
    """MetaOptNet-RR / R2D2: differentiable closed-form ridge head, learned scale and penalty."""

    name = "metaoptnet-ridge"

    def init_head(self, feat_dim):
        return {"log_scale": jnp.log(jnp.asarray(self.config.ridge.init_scale, jnp.float32)),
                "log_lambda": jnp.log(jnp.asarray(self.config.ridge.init_lambda, jnp.float32))}

    def head_logits(self, head, fs, sy, fq):
        return core.ridge_logits(fs, sy, fq, self.config.n_way, jnp.exp(head["log_lambda"]),
                                 scale=jnp.exp(head["log_scale"]))


_CLASSES: dict[str, type[GBMLAlgorithm]] = {
    "maml": MAML, "anil": ANIL, "protonet": ProtoNet, "metaoptnet-ridge": MetaOptNetRidge,
}


def make_gbml(name: str, gbml_config: GBMLConfig | Mapping[str, Any] | None = None) -> GBMLAlgorithm:
    """The GBML algorithm ``name`` with explicit hyper-parameters (or from the run config)."""
    if name not in _CLASSES:
        raise BridgeError(f"unknown GBML algorithm {name!r}; choose one of {', '.join(GBML_ALGORITHMS)}")
    return _CLASSES[name](gbml_config)


for _name, _cls in _CLASSES.items():
    register(_name, _cls)
