"""The run configuration: one typed dataclass, read from / written to JSON.

A paper setting ships as ``ntk_bridge/configs/<dataset>_<shots>shot.json``; command-line flags
override single fields. Every field is type-checked when a config is built, so a wrong type
fails at once with one line naming the field and the expected type.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ntk_bridge.errors import BridgeError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# fields that may differ between a run folder's saved config and a resume request
# (devices: the step is the same function on any device count, only float32 rounding differs)
RESUMABLE_CHANGES = frozenset({"root", "max_steps", "time_budget_s", "progress", "note", "checkpoint_minutes", "devices"})
HEADS = ("logreg", "proto", "ridge", "own")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved as ``config.json`` in the run folder)."""

    note: str = ""  # free text: where the setting comes from (paper protocol or CPU recipe); unused
    dataset: str = "omniglot"
    root: str = ""  # data folder; "" = the data layer's default for the dataset
    dataset_options: dict = field(default_factory=dict)  # passed to load_split(**options)
    algorithm: str = "mtl"
    # typed per-algorithm settings (ntk_bridge.train.options): a dict of some keys in, the full
    # resolved dataclass after construction (data-set defaults for the keys not given)
    algorithm_options: Any = None
    backbone: str = "conv4"
    channels: Any = None  # None = the backbone default; int (Conv-4) or 4 ints (ResNet-12)
    drop_rate: float = 0.1  # DropBlock rate (ResNet-12, last two blocks)
    dropout: float = 0.0  # plain dropout rate after ResNet-12's first two blocks (the paper's MTL: 0.1)
    block_size: int = 5  # DropBlock block size: 5 for the ImageNet sets, 2 for the CIFAR sets
    n_way: int = 5
    shots: int = 5  # support examples per class at test time (and in episodic training)
    train_query: int = 15  # queries per class in training tasks (MTL: shots + train_query per class)
    meta_batch: int = 4  # tasks per step
    normalize_features: bool = True  # L2-normalise features before the MTL head (training)
    normalize_test_features: bool = True  # L2-normalise frozen features before the test heads
    logit_scale: float = 1.0  # MTL: logits = logit_scale * phi(x) W^T (temperature; 10 is usual with normalised features)
    learn_logit_scale: bool = False  # MTL: make logit_scale a trained scalar (initialised at logit_scale)
    optimizer: str = "radam"  # radam | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only (Nesterov)
    weight_decay: float = 0.0
    schedule: str = "plateau"  # plateau | cosine | constant
    plateau_factor: float = 0.1
    plateau_patience: int = 4  # evaluations without improvement before the lr is cut
    early_stop_patience: int = 10  # evaluations without improvement before training stops (0 = never)
    max_steps: int = 1000
    time_budget_s: float = 0.0  # stop once training steps took this many seconds (0 = no budget)
    eval_every: int = 100  # steps between validation evaluations
    checkpoint_every: int = 100  # steps between checkpoints
    checkpoint_minutes: float = 5.0  # also a checkpoint once this much wall time passed since the last (0 = steps only)
    val_episodes: int = 200
    val_query: int = 15
    # validation episodes: false = the same fixed episodes at every validation; true = fresh
    # random episodes at each one (drawn from seed and step), as the paper's MTL code does
    val_fresh: bool = False
    test_episodes: int = 2000
    test_query: int = 15
    test_head: str = "logreg"  # logreg | proto | ridge | own (the algorithm's own adaptation)
    # heads evaluated at every validation (and on the test set at the end); the first drives
    # model selection, plateau and early stopping; () = test_head (logreg if test_head is own)
    val_heads: Any = ()
    logreg_c: float = 3.0  # scikit-learn's C
    logreg_iters: int = 15  # Newton iterations
    ridge_lambda: float = 1.0
    augment: bool = True
    pad: int = 4  # random-crop padding (84/8, 32/4)
    jitter: float = 0.4
    flip: bool = True
    seed: int = 0
    progress: bool = True
    # devices each step's meta_batch is split over, data parallel (ntk_bridge.train.parallel);
    # 0 = all: every local device, or every device of every process of a distributed run
    devices: int = 0

    def __post_init__(self):
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        _check_finite("config field", {f.name: getattr(self, f.name) for f in fields(self)
                                       if f.name != "algorithm_options"})      # options: once resolved, below
        checks = [
            (self.n_way >= 2, "n_way must be >= 2"),
            (self.shots >= 1, "shots must be >= 1"),
            (self.train_query >= 0, "train_query must be >= 0"),
            (self.meta_batch >= 1, "meta_batch must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.devices >= 0, "devices must be >= 0 (0 = all devices)"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.val_episodes >= 1 and self.test_episodes >= 1, "val_episodes and test_episodes must be >= 1"),
            (self.val_query >= 1 and self.test_query >= 1, "val_query and test_query must be >= 1"),
            (0.0 <= self.drop_rate < 1.0, "drop_rate must be in [0, 1)"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.logreg_c > 0, "logreg_c must be > 0"),
            (self.logit_scale > 0, "logit_scale must be > 0 (1 = plain logits, e.g. 10 with normalize_features)"),
            (self.optimizer in ("radam", "sgd"), f"optimizer {self.optimizer!r} is unknown; use radam or sgd"),
            (self.schedule in ("plateau", "cosine", "constant"),
             f"schedule {self.schedule!r} is unknown; use plateau, cosine or constant"),
            (self.test_head in ("logreg", "proto", "ridge", "own"),
             f"test_head {self.test_head!r} is unknown; use logreg, proto, ridge or own"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BridgeError(f"bad config: {msg}")
        from ntk_bridge.data.base import check_dataset
        check_dataset(self.dataset)
        if self.backbone not in ("conv4", "resnet12"):
            raise BridgeError(f"unknown backbone {self.backbone!r}; choose one of conv4, resnet12")
        _check_channels(self.backbone, self.channels)
        if not 0 <= self.seed < 2**31:
            raise BridgeError(f"bad config: seed must be an integer from 0 to {2**31 - 1}, got {self.seed}")
        if self.time_budget_s < 0:
            raise BridgeError(f"bad config: time_budget_s must be >= 0 (0 = no budget), got {self.time_budget_s}")
        object.__setattr__(self, "val_heads", _check_heads(self.val_heads))
        from ntk_bridge.train.options import OPTION_CLASSES, resolve_options
        if self.algorithm not in OPTION_CLASSES:
            raise BridgeError(f"unknown algorithm {self.algorithm!r}; known: {', '.join(sorted(OPTION_CLASSES))}")
        object.__setattr__(self, "algorithm_options",
                           resolve_options(self.algorithm, self.dataset, self.algorithm_options))
        _check_finite(f"{self.algorithm} option", dataclasses.asdict(self.algorithm_options))
        if not self.checkpoint_minutes >= 0:
            raise BridgeError(f"bad config: checkpoint_minutes must be >= 0 (0 = by steps only), got {self.checkpoint_minutes}")

    @property
    def heads(self) -> tuple[str, ...]:
        """Validation / test heads in order; the first selects the best checkpoint."""
        if self.val_heads:
            return self.val_heads
        return ("logreg",) if self.test_head == "own" else (self.test_head,)

    @property
    def n_per_class(self) -> int:
        """Images per class in an MTL training task (no support/query split in MTL): the MTL
        option ``images_per_class`` when it is set (> 0), else ``shots + train_query``."""
        own = getattr(self.algorithm_options, "images_per_class", 0)
        return own if own > 0 else self.shots + self.train_query

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return from_dict({**self.to_dict(), **changes})


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false",
               "dict": "a JSON object"}


def _check_type(name: str, value: Any, type_name: Any) -> None:
    """Raise BridgeError unless ``value`` fits the annotation ``type_name`` (a string here)."""
    t = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),
    }.get(t, True)
    if t == "Any" and name != "channels":
        return
    if t == "Any" and name == "channels":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        t = "null, an integer or a list of integers"
    if not ok:
        raise BridgeError(f"config field {name!r} must be {_TYPE_NAMES.get(t, t)}, got {value!r} "
                          f"({type(value).__name__}); fix the value in the config file or flag")


def _check_finite(what: str, values: dict) -> None:
    """Refuse NaN and infinities (JSON's ``NaN`` / ``Infinity`` parse to them) in any number of ``values``,
    nested ones included, before anything runs: a run with lr=Infinity would train to NaN weights."""
    import math

    def bad(v) -> bool:
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, dict):
            return any(bad(x) for x in v.values())
        return isinstance(v, (list, tuple)) and any(bad(x) for x in v)

    for name, value in values.items():
        if bad(value):
            raise BridgeError(f"{what} {name!r} is {value!r}, not a finite number; give a finite value "
                              f"(`{name}` in the config)")


def _check_channels(backbone: str, channels: Any) -> None:
    """Widths must be positive; Conv-4 takes one integer, ResNet-12 one or four."""
    if channels is None:
        return
    widths = [channels] if isinstance(channels, int) else list(channels)
    if backbone == "conv4" and not isinstance(channels, int):
        raise BridgeError(f"conv4 takes one width (an integer, e.g. channels=32), got {list(channels)}; "
                          f"a list of four widths is for resnet12")
    if backbone == "resnet12" and len(widths) not in (1, 4):
        raise BridgeError(f"resnet12 takes one width or four (e.g. [64, 160, 320, 640]), got {widths}")
    bad = [w for w in widths if w < 1]
    if bad:
        raise BridgeError(f"channels must be >= 1, got {channels!r}; e.g. channels=32 "
                          f"(null = the backbone's default)")


def _check_heads(heads: Any) -> tuple[str, ...]:
    """``val_heads`` as a tuple of distinct known head names."""
    if isinstance(heads, str) or not isinstance(heads, (list, tuple)):
        raise BridgeError(f"config field 'val_heads' must be a list of head names, got {heads!r}; "
                          f"e.g. [\"own\", \"logreg\"]")
    bad = [h for h in heads if h not in HEADS]
    if bad or len(set(heads)) != len(heads):
        raise BridgeError(f"val_heads {list(heads)} must be distinct names from {', '.join(HEADS)}")
    return tuple(heads)


def from_dict(values: dict) -> TrainConfig:
    """Build a config from a dict; unknown keys are an error (typos must not pass silently)."""
    if not isinstance(values, dict):
        raise BridgeError(f"a config must be a JSON object, got {type(values).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BridgeError(f"unknown config field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
    values = dict(values)
    if isinstance(values.get("channels"), list):
        values["channels"] = tuple(values["channels"])
    for key in ("lr", "logit_scale", "time_budget_s", "checkpoint_minutes", "drop_rate", "dropout"):
        if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
            values[key] = float(values[key])
    return TrainConfig(**values)


def load_config(path_or_name: str | Path) -> TrainConfig:
    """Read a config from a JSON file, or a packaged setting by name (e.g. ``cifarfs_5shot``)."""
    path = Path(path_or_name)
    if not path.exists():
        candidate = CONFIG_DIR / f"{path_or_name}.json"
        if not candidate.exists():
            names = ", ".join(packaged_configs())
            raise BridgeError(f"config {str(path_or_name)!r} is neither a file nor a packaged setting; "
                              f"packaged: {names}")
        path = candidate
    if not path.is_file():
        raise BridgeError(f"config {path} is a folder, not a file; give a config JSON file or a packaged setting name")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BridgeError(f"config {path} is not valid JSON ({err.msg} at line {err.lineno}); fix the file") from None
    except (UnicodeDecodeError, OSError) as err:
        raise BridgeError(f"config {path} cannot be read as a text file ({type(err).__name__}); give a JSON file") from None
    except RecursionError:
        raise BridgeError(f"config {path} is not valid JSON (nested too deeply); fix the file") from None
    try:
        return from_dict(values)
    except BridgeError as err:
        raise BridgeError(f"{path}: {err}") from None


def packaged_configs() -> list[str]:
    """Names of the packaged paper settings."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def setting_name(dataset: str, shots: int) -> str:
    """Packaged config name for a data set and shot count, e.g. ``miniimagenet_1shot``."""
    return f"{dataset}_{shots}shot"


def incompatible_fields(saved: dict, requested: TrainConfig) -> list[str]:
    """Fields whose values differ between a saved run config and ``requested`` (excluding the
    ones a resume may change: data root, max_steps, progress bar); a field missing from
    ``saved`` (added to TrainConfig later) compares as its default."""
    now = json.loads(json.dumps(requested.to_dict()))
    # a field added after the run was saved counts as its default (e.g. logit_scale = 1.0)
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    saved = json.loads(json.dumps({**{k: v for k, v in defaults.items() if k not in saved}, **saved}))
    keys = sorted((set(saved) | set(now)) - RESUMABLE_CHANGES)
    return [k for k in keys if saved.get(k) != now.get(k)]
