"""Tiny Omniglot zips in the official layout, for tests that need real-format data without the real set."""

from pathlib import Path

import numpy as np

# Alphabets of the default split of the two small background zips (ntk_bridge.data.omniglot.SMALL_SPLIT).
_TINY_ALPHABETS = {"images_background_small1": ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"),
                   "images_background_small2": ("Japanese_(katakana)", "Sanskrit", "Tagalog")}


def write_tiny_omniglot(root: Path, chars: int = 5, drawers: int = 10) -> Path:
    """Two small-background zips in the official layout (28x28 1-bit PNGs): ``chars`` characters per
    alphabet, ``drawers`` drawings each (a fixed random stroke mask per character, ~5% of pixels flipped
    per drawer), so train / val / test splits have 25 / 5 / 10 classes (5 / 1 / 2 alphabets)."""
    import io
    import zipfile

    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for z, (stem, alphabets) in enumerate(_TINY_ALPHABETS.items()):
        with zipfile.ZipFile(root / f"{stem}.zip", "w") as zf:
            for a, alphabet in enumerate(alphabets):
                for c in range(1, chars + 1):
                    rng = np.random.default_rng([z, a, c])
                    base = rng.random((28, 28)) > 0.8
                    for d in range(1, drawers + 1):
                        img = base ^ (rng.random((28, 28)) > 0.95)
                        buf = io.BytesIO()
                        Image.fromarray((~img).astype(np.uint8) * 255).convert("1").save(buf, format="PNG")
                        zf.writestr(f"{stem}/{alphabet}/character{c:02d}/{1000 + d:04d}_{c:02d}.png", buf.getvalue())
    return root


def omniglot_root(tmp: Path) -> Path:
    """The real Omniglot small zips if present, else tiny ones written under ``tmp``."""
    from ntk_bridge.data import default_omniglot_root

    real = default_omniglot_root()
    if all((real / f"images_background_small{k}.zip").is_file() for k in (1, 2)):
        return real
    return write_tiny_omniglot(tmp / "omniglot")
