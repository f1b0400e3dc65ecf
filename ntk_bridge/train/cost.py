"""Cost checks before a run allocates anything: a memory estimate that refuses impossible
sizes in one line, and a warning before long evaluations.

The estimates are from the architecture alone (no JAX tracing), so they are cheap and safe to
run on absurd sizes (``channels=100000``):

- parameters ``P``: Conv-4 block ``9 c_in c + c`` (conv + bias) ``+ 2c`` (batch norm);
  ResNet-12 block ``9 c_in c + 18 c^2 + c_in c`` (three 3x3 convs and the 1x1 shortcut)
  ``+ 8c`` (four batch norms);
- training memory ``4 bytes * (4 P + A * n * m)``: weights, gradients and two optimiser moments,
  plus ``A`` stored activations per image (Conv-4: 3 maps of ``h w c`` per block, ResNet-12: 8) for the
  ``n`` images of a step; ``m = 2 (inner_steps + 1)`` for second-order MAML/ANIL without remat
  (every inner step's activations are kept for the meta-gradient), else 1.

It is a lower bound of what XLA allocates (workspace, copies), used only to refuse sizes that
cannot fit, not to promise that others do.
"""

from __future__ import annotations

import os
from typing import Any

from ntk_bridge.errors import BridgeError

IMAGE_SHAPES = {"omniglot": (28, 1), "cifarfs": (32, 3), "fc100": (32, 3), "miniimagenet": (84, 3),
                "tieredimagenet": (84, 3), "imagefolder": (84, 3)}
RESNET12_WIDTHS = (64, 160, 320, 640)
CONV4_WIDTH = 64
# an evaluation pass with episodes * query * n_way^2 above this gets a warning first (query images
# times the n_way scores each; the head's solve grows with n_way too). The paper protocol (2,000
# 5-way test episodes x 50 queries) is 2.5e6; 300 100-way validation episodes x 15 queries 4.5e7
EVAL_WARN_WORK = 10_000_000


def image_shape(config: Any) -> tuple[int, int]:
    """(side, channels) of the run's images (Omniglot's side from ``dataset_options``)."""
    side, chans = IMAGE_SHAPES[config.dataset]
    if config.dataset in ("omniglot", "imagefolder"):      # an image folder: its options (else an estimate)
        side = int(config.dataset_options.get("image_size") or side)
        chans = int(config.dataset_options.get("channels") or chans)
    return side, chans


def widths(config: Any) -> list[int]:
    """The four block widths of the backbone."""
    c = config.channels
    if config.backbone == "conv4":
        return [CONV4_WIDTH if c is None else int(c)] * 4
    if c is None:
        return list(RESNET12_WIDTHS)
    return [int(c)] * 4 if isinstance(c, int) else [int(w) for w in c]


def param_count(config: Any) -> int:
    """Parameters of the backbone (formulas in the module docstring)."""
    _, c_in = image_shape(config)
    total = 0
    for c in widths(config):
        if config.backbone == "conv4":
            total += 9 * c_in * c + c + 2 * c
        else:
            total += 9 * c_in * c + 18 * c * c + c_in * c + 8 * c
        c_in = c
    return total


def activations_per_image(config: Any) -> int:
    """Stored activation floats per image in a training pass."""
    side, _ = image_shape(config)
    per_block = 3 if config.backbone == "conv4" else 8
    total = 0
    for c in widths(config):
        total += per_block * side * side * c
        side = max(side // 2, 1)
    return total


def images_per_step(config: Any) -> int:
    """Images in one training step: ``meta_batch * n_way * n_per_class`` (``shots + train_query``, or MTL's ``images_per_class``)."""
    return config.meta_batch * config.n_way * config.n_per_class


def training_bytes(config: Any) -> int:
    """Lower-bound training memory (bytes) of one step (module docstring)."""
    opts = config.algorithm_options
    mult = 1
    if config.algorithm in ("maml", "anil") and not (opts.first_order or opts.remat):
        mult = 2 * (opts.inner_steps + 1)
    return 4 * (4 * param_count(config) + activations_per_image(config) * images_per_step(config) * mult)


def available_bytes() -> int:
    """Memory the run may use: the accelerator's limit if JAX reports one, else physical RAM."""
    try:
        import jax
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
    except Exception:  # noqa: BLE001 - no device statistics: fall back to host memory
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(config: Any, limit: int | None = None) -> None:
    """Refuse a run whose lower-bound memory estimate exceeds ``limit`` (default: available)."""
    need = training_bytes(config)
    limit = available_bytes() if limit is None else limit
    if need > limit:
        raise BridgeError(
            f"{config.backbone} with channels={config.channels} needs at least {need / 2**30:.1f} GiB "
            f"({param_count(config):,} parameters, {images_per_step(config)} images per step; "
            f"estimate), more than the {limit / 2**30:.1f} GiB available; use fewer channels, "
            f"a smaller meta_batch or fewer images per task")


def evaluation_warning(config: Any) -> str:
    """A one-line warning when a validation or the test pass exceeds ``EVAL_WARN_WORK``
    (``episodes * n_way * query * n_way``; "" otherwise)."""
    parts = []
    for what, episodes, query in (("each validation", config.val_episodes, config.val_query),
                                  ("the test", config.test_episodes, config.test_query)):
        n = episodes * config.n_way * query
        if n * config.n_way > EVAL_WARN_WORK:
            parts.append(f"{what} classifies {n:,} query images ({episodes} {config.n_way}-way episodes)")
    if not parts:
        return ""
    return ("warning: " + " and ".join(parts) + f", with {len(config.heads)} head(s) each; this can "
            "take many minutes on a CPU with no progress shown; lower val_episodes/test_episodes or n_way "
            "for a quicker run")
