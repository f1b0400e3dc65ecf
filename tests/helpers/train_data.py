"""Tiny synthetic few-shot data for the trainer tests (no files): class-dependent blobs."""

from __future__ import annotations

import numpy as np

from ntk_bridge.data import FewShotSplit
from ntk_bridge.train.config import TrainConfig
from ntk_bridge.train.loop import RunData


def synthetic_split(n_classes: int, per_class: int, size: int = 16, channels: int = 1,
                    seed: int = 0, name: str = "synthetic/train") -> FewShotSplit:
    """Each class is a fixed random pattern plus per-image noise, uint8 (N, size, size, C)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, (n_classes, size, size, channels))
    noise = rng.normal(0, 40, (n_classes, per_class, size, size, channels))
    images = np.clip(protos[:, None] + noise, 0, 255).astype(np.uint8).reshape(-1, size, size, channels)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    return FewShotSplit(images, labels, tuple(f"c{i}" for i in range(n_classes)), name)


def synthetic_data(size: int = 16, channels: int = 1) -> RunData:
    return RunData(synthetic_split(12, 8, size, channels, 0, "synthetic/train"),
                   synthetic_split(6, 8, size, channels, 1, "synthetic/val"),
                   synthetic_split(6, 8, size, channels, 2, "synthetic/test"),
                   (0.5,) * channels, (0.25,) * channels)


def tiny_config(**changes) -> TrainConfig:
    base = dict(dataset="omniglot", backbone="conv4", channels=4, n_way=3, shots=1, train_query=2,
                meta_batch=2, max_steps=6, eval_every=2, checkpoint_every=2, val_episodes=8,
                val_query=2, test_episodes=10, test_query=2, pad=1, progress=False, seed=3)
    base.update(changes)
    if base.get("algorithm", "mtl") == "mtl" and "algorithm_options" not in changes:
        # the tiny splits hold 8 images a class: MTL takes shots + train_query of them, not the paper's 10
        base["algorithm_options"] = {"images_per_class": 0}
    return TrainConfig(**base)
