"""A user's own images as a few-shot data set: ``root/<class>/<image>.png`` (also .jpg, .jpeg, .bmp).

Every sub-folder of ``root`` holding images is one class (hidden folders skipped). Classes are
split, never images (a class lies in exactly one of train / val / test):

- with a split file (``split_file``, default ``root/splits.json`` if it exists): a JSON object
  ``{"train": [class, ...], "val": [...], "test": [...]}``; every listed class must exist, none may
  appear twice, each split needs at least one class;
- otherwise by seed: the sorted class names permuted by ``numpy.random.default_rng(seed)``, the
  first ``round(0.64 n)`` to train, the next ``round(0.16 n)`` to val, the rest to test (the
  64/16/20 proportion of mini-ImageNet), each split at least one class (needs >= 3 classes).

Images are decoded once per call with Pillow to uint8 (N, H, W, C): ``channels`` 1 (grey) or 3
(RGB); by default 1 if every image of the split is greyscale ('1', 'L', 'LA', 'I;16'), else 3.
``image_size`` N resizes every image to N x N (LANCZOS); without it all images must share one size.
Any problem (no classes, an empty class folder, an unreadable image, mixed sizes) is one
BridgeError line naming the file or folder and the fix; the split itself is validated by
:class:`~ntk_bridge.data.base.FewShotSplit` like every named data set. Normalisation: the
per-channel mean / std of the *training* split (:func:`image_folder_stats`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ntk_bridge.data.base import SPLITS, FewShotSplit, check_root, check_split
from ntk_bridge.data.formats import open_image
from ntk_bridge.errors import BridgeError, require

NAME = "imagefolder"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLIT_FILE = "splits.json"
FRACTIONS = (0.64, 0.16)          # train, val; test gets the rest
GREY_MODES = ("1", "L", "LA", "I;16", "I")


def list_classes(root: Path) -> dict[str, list[Path]]:
    """{class name: sorted image paths} of every sub-folder of ``root`` holding images."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS and f.is_file())
        require(images, f"class folder {str(folder)!r} holds no images ({', '.join(EXTENSIONS)}); "
                        "add images or remove the folder")
        classes[folder.name] = images
    require(classes, f"{str(root)!r} has no class folders; an image folder data set is root/<class>/<image>.png")
    return classes


def _read_split_file(path: Path, names: list[str]) -> dict[str, list[str]]:
    """The class lists of a splits.json, checked against the class folders ``names``."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise BridgeError(f"split file {str(path)!r} is not readable JSON ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:100]}); write "
                          '{"train": [...], "val": [...], "test": [...]}') from None
    require(isinstance(spec, dict) and set(spec) == set(SPLITS)
            and all(isinstance(v, list) and v and all(isinstance(c, str) for c in v) for v in spec.values()),
            f"split file {str(path)!r} must be a JSON object with non-empty lists of class names under "
            f"exactly the keys {', '.join(SPLITS)}")
    listed = [c for s in SPLITS for c in spec[s]]
    twice = sorted({c for c in listed if listed.count(c) > 1})
    require(not twice, f"split file {str(path)!r} lists classes in more than one place: {', '.join(twice[:5])}")
    unknown = sorted(set(listed) - set(names))
    require(not unknown, f"split file {str(path)!r} names classes with no folder under the root: "
                         f"{', '.join(unknown[:5])}")
    return {s: list(spec[s]) for s in SPLITS}


def seed_split(names: list[str], seed: int) -> dict[str, list[str]]:
    """Classes split 64/16/20 by ``default_rng(seed)`` (each split >= 1 class), each list sorted."""
    n = len(names)
    require(n >= 3, f"an image folder needs at least 3 classes for train / val / test (got {n}); "
                    "add classes or give a split file")
    order = [sorted(names)[i] for i in np.random.default_rng(seed).permutation(n)]
    n_train = min(max(1, round(FRACTIONS[0] * n)), n - 2)
    n_val = min(max(1, round(FRACTIONS[1] * n)), n - n_train - 1)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {s: sorted(p) for s, p in zip(SPLITS, parts)}


def class_split(root: Path, split_file=None, seed: int = 0) -> dict[str, list[str]]:
    """{split: class names} from the split file (given, or root/splits.json) or by seed."""
    names = list(list_classes(root))
    path = Path(split_file) if split_file else root / SPLIT_FILE
    if split_file:
        require(path.is_file(), f"split file {str(path)!r} does not exist")
    return _read_split_file(path, names) if path.is_file() else seed_split(names, seed)


def _decode(path: Path, size: int | None):
    from PIL import Image

    img = open_image(path, repr(str(path)))
    img = img.convert("L" if img.mode in GREY_MODES else "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    return img


def load_image_folder(root, split: str, *, image_size: int | None = None, channels: int | None = None,
                      split_file: str | None = None, seed: int = 0) -> FewShotSplit:
    """The ``split`` of the image folder at ``root`` as a :class:`FewShotSplit` (see module docstring)."""
    root = check_root(root, NAME)
    split = check_split(split)
    require(image_size is None or (isinstance(image_size, int) and image_size >= 4),
            f"image_size must be an integer >= 4 (got {image_size!r})")
    require(channels in (None, 1, 3), f"channels must be 1 (grey) or 3 (RGB) (got {channels!r})")
    names = class_split(root, split_file, seed)[split]
    files = list_classes(root)
    paths = [(label, p) for label, c in enumerate(names) for p in files[c]]
    images = [_decode(p, image_size) for _, p in paths]
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        first = {}
        for (_, p), im in zip(paths, images):
            first.setdefault(im.size, p)
        example = ", ".join(f"{p.name} {w}x{h}" for (w, h), p in list(first.items())[:2])
        raise BridgeError(f"images in {str(root)!r} have different sizes ({example}); pass image_size=N "
                          "(--set dataset_options.image_size=N) to resize them all to N x N")
    grey = all(im.mode == "L" for im in images)
    c = channels or (1 if grey else 3)
    arrays = [np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.uint8) for im in images]
    x = np.stack(arrays)
    x = x[..., None] if c == 1 else x
    labels = np.asarray([label for label, _ in paths], dtype=np.int64)
    return FewShotSplit(x, labels, tuple(names), f"{NAME}/{split}")


def image_folder_stats(root, **options) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units of the training split (used to normalise every split)."""
    train = load_image_folder(root, "train", **options)
    x = train.images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
