"""The split container every loader returns, the list of data sets and their normalisation.

A split is uint8 images ``(N, H, W, C)`` plus dense int64 labels ``0..C_split-1`` and the
class names. Loaders build one from a root folder and a split name via :func:`load_split`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntk_bridge.errors import BridgeError

DATASETS: tuple[str, ...] = ("omniglot", "cifarfs", "fc100", "miniimagenet", "tieredimagenet", "imagefolder")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Per-channel mean / std in [0, 1] units (docs/benchmarks.md).
_IMAGENET_STATS = ((120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255),
                   (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255))
_CIFAR_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
# Omniglot (strokes bright, background 0, 28x28 LANCZOS): computed on the default train split
# of the two small background zips (163 characters, 3,260 images) with
#   .venv/bin/python experiments/bench_data.py --omniglot-stats
# (measured: mean 0.08548, std 0.24093; val 0.0860, test 0.0807 mean).
_OMNIGLOT_STATS = ((0.0855,), (0.2409,))

_STATS = {
    "omniglot": _OMNIGLOT_STATS,
    "cifarfs": _CIFAR_STATS,
    "fc100": _CIFAR_STATS,
    "miniimagenet": _IMAGENET_STATS,
    "tieredimagenet": _IMAGENET_STATS,
}


@dataclass(frozen=True)
class FewShotSplit:
    """One split of a few-shot data set.

    images: uint8 (N, H, W, C), C = 1 for Omniglot and 3 otherwise.
    labels: int64 (N,), dense class ids 0..len(class_names)-1 of this split.
    class_names: one name per class id.
    name: "dataset/split", e.g. "omniglot/train".
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        img, lab = self.images, self.labels
        where = f"split {self.name!r}"
        if not isinstance(img, np.ndarray) or img.ndim != 4:
            raise BridgeError(f"{where}: images must be a 4-d array (N, H, W, C), got shape "
                              f"{getattr(img, 'shape', type(img).__name__)}")
        if img.dtype != np.uint8:
            raise BridgeError(f"{where}: images must be uint8 (0..255), got {img.dtype}; "
                              "convert with np.clip(x, 0, 255).astype(np.uint8)")
        if img.shape[-1] not in (1, 3):
            raise BridgeError(f"{where}: images must have 1 or 3 channels last (N, H, W, C), "
                              f"got shape {img.shape}")
        if not isinstance(lab, np.ndarray) or lab.ndim != 1 or lab.dtype != np.int64:
            raise BridgeError(f"{where}: labels must be an int64 array of shape (N,), got "
                              f"{getattr(lab, 'dtype', type(lab).__name__)} "
                              f"{getattr(lab, 'shape', '')}")
        if lab.shape[0] != img.shape[0]:
            raise BridgeError(f"{where}: {img.shape[0]} images but {lab.shape[0]} labels")
        if not isinstance(self.class_names, tuple):
            object.__setattr__(self, "class_names", tuple(self.class_names))
        n_cls = len(self.class_names)
        if lab.size and (lab.min() < 0 or lab.max() >= n_cls):
            raise BridgeError(f"{where}: labels must lie in 0..{n_cls - 1} (one per class name), "
                              f"got {lab.min()}..{lab.max()}")
        if lab.size and np.unique(lab).size != n_cls:
            raise BridgeError(f"{where}: {n_cls} class names but only {np.unique(lab).size} "
                              "classes have images; labels must be dense")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_counts(self) -> np.ndarray:
        """Images per class id, int64 (num_classes,)."""
        return np.bincount(self.labels, minlength=self.num_classes)


def check_dataset(dataset: str) -> str:
    """Return the canonical data-set name or raise a one-line error listing the valid ones."""
    key = str(dataset).lower().replace("-", "").replace("_", "")
    aliases = {"cifarfs": "cifarfs", "fc100": "fc100", "omniglot": "omniglot",
               "miniimagenet": "miniimagenet", "mini": "miniimagenet",
               "tieredimagenet": "tieredimagenet", "tiered": "tieredimagenet",
               "imagefolder": "imagefolder", "folder": "imagefolder"}
    if key not in aliases:
        raise BridgeError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return aliases[key]


def check_split(split: str) -> str:
    """Return ``split`` if valid ("validation" is accepted for "val"), else a one-line error."""
    s = str(split).lower()
    if s == "validation":
        s = "val"
    if s not in SPLITS:
        raise BridgeError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return s


def check_root(root, dataset: str) -> Path:
    """Resolve ``root`` and fail in one line when the folder does not exist."""
    if root is None:
        raise BridgeError(f"no data folder given for {dataset}; pass `root` (the folder "
                          "holding the data files)")
    path = Path(os.path.expanduser(str(root)))
    if not path.is_dir():
        raise BridgeError(f"data folder {str(path)!r} for {dataset} does not exist; create it "
                          "and put the data files there (see `ntk-bridge data info --help`)")
    return path


def default_data_root() -> Path:
    """``$NTK_BRIDGE_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("NTK_BRIDGE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_omniglot_root() -> Path:
    """Folder with the Omniglot zips: ``$NTK_BRIDGE_DATA/omniglot`` or ``../shared/data/omniglot``."""
    return default_data_root() / "omniglot"


