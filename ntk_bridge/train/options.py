"""Typed hyper-parameters of each algorithm (``TrainConfig.algorithm_options``), with
per-data-set defaults.

Every algorithm has one frozen dataclass of options. A run config names the algorithm and gives
some of its options (JSON object ``algorithm_options``, or ``--set inner_lr=0.4``); the rest
come from :func:`default_options` for the run's data set, and the config saves the complete,
resolved set, so a run folder records exactly what it ran with and a resume with other values is
refused. An unknown or mistyped key, or a value of the wrong type, is a one-line error that lists
the valid keys.

Defaults (``DATASET_DEFAULTS`` overrides the class defaults for one data set):

- MAML / ANIL: inner learning rate 0.01, 5 inner steps in training and 10 at test time (Finn et
  al. 2017's mini-ImageNet setting, used for every 32x32 and 84x84 set here). Omniglot: inner
  learning rate 0.4 with 1 inner step in training (Finn et al.'s 5-way Omniglot setting) and 1
  at test time, as trained. Measured (experiments/results/compare_omniglot/converged/README.md):
  with 3 test-time steps of 0.4 the adapted head overshoots on the trained Conv-4's
  unnormalised features, and the own-head validation accuracy of a trained ANIL 5-shot run
  fell from 53.3% (1 step) to 45.4% (3 steps; 200 episodes), which also misled early stopping.
  (For ANIL one step from its learnt head initialisation, which stays near the zero it starts
  from, gives logits nearly proportional to the step size: 53.2% with a step of 2.0.)
- MetaOptNet-ridge: initial ridge penalty 1 and logit scale 10 (both learnt; Bertinetto et al.'s
  R2D2 starts its scale near 10).
- MTL (``mtl``): the paper's training as in the authors' code (AI-secure/multi-task-learning at
  81ea1f5; docs/mtl_faithful.md lists every setting beside its file:line): the head bank
  initialised U(+-1/sqrt(D)) times sqrt(n_base / n_way) (``lightning_mtl.py:119-121``), batch
  norm per task (one forward pass per task, ``train.py:201``), the DropBlock rate ramped over
  the first 40,000 forward passes (``models/resnet.py:161``), and ``images_per_class`` images per
  class in a training task whatever the test shots (``train.py:109``; 10 unless a data set's
  command says otherwise, set by the packaged configs).
- ``mtl-pooled``: ours, the MTL this project trained before issue 31, kept for comparison:
  plain U(+-1/sqrt(D)) head, one forward pass with batch norm pooled over the tasks of a step,
  no ramp, ``shots + train_query`` images per class.
- ProtoNet: no algorithm options. (MTL's head settings ``normalize_features``, ``logit_scale``,
  ``learn_logit_scale`` are run-config fields, older than this module.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ntk_bridge.errors import BridgeError


@dataclass(frozen=True)
class NoOptions:
    """An algorithm without options of its own (MTL, ProtoNet): any key is refused."""

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class MAMLOptions:
    """MAML / ANIL inner loop.

    inner_lr: step size alpha of the inner SGD steps ``theta <- theta - alpha * grad L_support``.
    inner_steps: inner steps in training; eval_inner_steps: inner steps at test time.
    first_order: drop the second-order terms of the meta-gradient (FOMAML).
    remat: recompute each inner step's activations in the backward pass (less memory).
    """

    inner_lr: float = 0.01
    inner_steps: int = 5
    eval_inner_steps: int = 10
    first_order: bool = False
    remat: bool = False

    def __post_init__(self):
        _check_fields(self)
        _require_positive(self, "inner_lr", "inner_steps", "eval_inner_steps")


@dataclass(frozen=True)
class RidgeOptions:
    """MetaOptNet-ridge (R2D2) head: initial ridge penalty ``lambda`` and logit scale ``s``
    (both learnt, stored as logs): ``logits = s * Q X^T (X X^T + lambda I)^-1 Y``."""

    init_lambda: float = 1.0
    init_scale: float = 10.0

    def __post_init__(self):
        _check_fields(self)
        _require_positive(self, "init_lambda", "init_scale")


@dataclass(frozen=True)
class MTLOptions:
    """MTL training (the head bank and how a step's tasks are run).

    scale_head_init: multiply the head bank's U(-1/sqrt(D), 1/sqrt(D)) initialisation by
      ``sqrt(n_base_classes / n_way)`` (the authors' ``lightning_mtl.py:119-121``).
    per_task_bn: run the backbone once per task, so batch-norm batch statistics are each task's
      own and the running averages take one update per task in order (``train.py:201``: one
      forward per task, tasks joined by gradient accumulation); false = one forward pass over
      all tasks of a step, statistics pooled (``mtl-pooled``).
    dropblock_ramp: forward passes over which the DropBlock rate grows linearly from 0 to
      ``drop_rate`` (``models/resnet.py:161``: 40,000); counted as ``meta_batch`` per training
      step plus ``val_episodes`` per validation done; 0 = the full rate from the start.
    images_per_class: images per class in a training task (``train.py:109``: train_shots +
      train_queries, 10 by default), independent of the test shots; 0 = ``shots + train_query``.
    """

    scale_head_init: bool = True
    per_task_bn: bool = True
    dropblock_ramp: int = 40000
    images_per_class: int = 10

    def __post_init__(self):
        _check_fields(self)
        for name in ("dropblock_ramp", "images_per_class"):
            if getattr(self, name) < 0:
                raise BridgeError(f"option {name!r} must be >= 0 (0 = off), got {getattr(self, name)}; "
                                  "fix algorithm_options")


OPTION_CLASSES: dict[str, type] = {
    "mtl": MTLOptions, "mtl-pooled": MTLOptions, "protonet": NoOptions, "maml": MAMLOptions, "anil": MAMLOptions,
    "metaoptnet-ridge": RidgeOptions,
}

# per algorithm, on top of the class defaults (before the data set's): mtl-pooled is today's MTL
ALGORITHM_DEFAULTS: dict[str, dict[str, Any]] = {
    "mtl-pooled": {"scale_head_init": False, "per_task_bn": False, "dropblock_ramp": 0, "images_per_class": 0},
}

# per data set: algorithm -> {field: default}; a data set not listed uses the class defaults
DATASET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "omniglot": {"maml": {"inner_lr": 0.4, "inner_steps": 1, "eval_inner_steps": 1},
                 "anil": {"inner_lr": 0.4, "inner_steps": 1, "eval_inner_steps": 1}},
}


def option_class(algorithm: str) -> type:
    """The options dataclass of ``algorithm`` (:class:`NoOptions` for one without options)."""
    return OPTION_CLASSES.get(algorithm, NoOptions)


def option_names(algorithm: str) -> list[str]:
    """The valid option keys of ``algorithm``."""
    return [f.name for f in fields(option_class(algorithm))]


def default_options(algorithm: str, dataset: str) -> Any:
    """The options ``algorithm`` runs with on ``dataset`` when the config gives none."""
    return option_class(algorithm)(**{**ALGORITHM_DEFAULTS.get(algorithm, {}),
                                      **DATASET_DEFAULTS.get(dataset, {}).get(algorithm, {})})


def resolve_options(algorithm: str, dataset: str, given: Any) -> Any:
    """Typed options: ``given`` (a dict of some keys, None, or an options instance) on top of
    the data set's defaults; an unknown key or a wrong type is a one-line BridgeError."""
    cls = option_class(algorithm)
    if isinstance(given, cls):
        return given
    if given is None:
        given = {}
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        raise BridgeError(f"algorithm_options of type {type(given).__name__} do not belong to "
                          f"algorithm {algorithm!r}; give a JSON object with keys "
                          f"{_valid(algorithm)}")
    if not isinstance(given, Mapping):
        raise BridgeError(f"algorithm_options must be a JSON object, got {given!r}; e.g. "
                          '\'algorithm_options={"inner_lr": 0.4}\'')
    unknown = sorted(set(given) - set(option_names(algorithm)))
    if unknown:
        raise BridgeError(f"unknown {algorithm} option(s) {', '.join(unknown)}; valid keys: "
                          f"{_valid(algorithm)}")
    values = {**dataclasses.asdict(default_options(algorithm, dataset)), **given}
    for f in fields(cls):  # an integer is a valid number
        if f.type == "float" and isinstance(values[f.name], int) and not isinstance(values[f.name], bool):
            values[f.name] = float(values[f.name])
    return cls(**values)


def describe_defaults(algorithm: str) -> str:
    """One line such as ``maml: inner_lr 0.4, inner_steps 1, ... (omniglot); ... (other sets)``
    for --help (the data sets with their own defaults first, then the class defaults)."""
    special = [d for d, per in DATASET_DEFAULTS.items() if algorithm in per]
    parts = []
    for d, label in [(d, d) for d in special] + [("", "other sets" if special else "every set")]:
        opts = dataclasses.asdict(default_options(algorithm, d))
        if opts:
            parts.append(", ".join(f"{k} {v}" for k, v in opts.items()) + f" ({label})")
    return f"{algorithm}: " + ("; ".join(parts) if parts else "no options")


def _valid(algorithm: str) -> str:
    names = option_names(algorithm)
    return ", ".join(names) if names else f"none ({algorithm} has no algorithm options)"


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,)}


def _check_fields(obj: Any) -> None:
    """Type-check every field of an options dataclass (bools are not numbers)."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        kinds = _TYPES[f.type]
        ok = isinstance(v, kinds) and (f.type == "bool" or not isinstance(v, bool))
        if f.type == "float" and ok:
            ok = math.isfinite(v)
        if not ok:
            want = {"int": "an integer", "float": "a finite number", "bool": "true/false"}[f.type]
            raise BridgeError(f"option {f.name!r} must be {want}, got {v!r}; fix algorithm_options")


def _require_positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not v > 0:
            raise BridgeError(f"option {name!r} must be > 0, got {v!r}; fix algorithm_options")
