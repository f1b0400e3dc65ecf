"""A tiny image folder (ROOT/<class>/*.png) for tests that train on or break the image-folder reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image_folder(root: Path, n_classes: int = 12, per_class: int = 6, size: int = 16, seed: int = 0) -> Path:
    """``n_classes`` class folders of ``per_class`` grey PNGs: a fixed random pattern per class, 5% noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        base = rng.random((size, size)) > 0.6
        folder = Path(root) / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = (base ^ (rng.random(base.shape) > 0.95)).astype(np.uint8) * 255
            Image.fromarray(img).save(folder / f"img_{i}.png")
    return Path(root)
