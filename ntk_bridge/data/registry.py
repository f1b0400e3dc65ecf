"""The data sets by name: :func:`load_split` dispatches to each format's loader
(:mod:`~ntk_bridge.data.omniglot`, :mod:`~ntk_bridge.data.cifar`, :mod:`~ntk_bridge.data.miniimagenet`,
:mod:`~ntk_bridge.data.tieredimagenet`, :mod:`~ntk_bridge.data.image_folder`), and
:func:`dataset_stats` gives the per-channel normalisation. The loaders import only
:mod:`ntk_bridge.data.base`; this module sits above them.
"""

from __future__ import annotations

from ntk_bridge.data.base import _STATS, FewShotSplit, check_dataset, check_split
from ntk_bridge.errors import BridgeError


def dataset_stats(dataset: str, root=None, **options) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units used to normalise ``dataset``: fixed for the named
    sets; for an image folder, those of its training split at ``root`` (loaded with ``options``)."""
    name = check_dataset(dataset)
    if name == "imagefolder":
        from ntk_bridge.data.image_folder import image_folder_stats
        return image_folder_stats(root, **options)
    return _STATS[name]


def load_split(dataset: str, root, split: str, **options) -> FewShotSplit:
    """Load ``split`` ("train", "val" or "test") of ``dataset`` from the folder ``root``.

    Options by data set: omniglot ``image_size=28, rotations=False, invert=True``; imagefolder
    (``root/<class>/*.png``, :mod:`ntk_bridge.data.image_folder`) ``image_size, channels, split_file,
    seed``; the others ``cache_dir=None`` (where decoded arrays are cached) and ``source`` to force one format.
    """
    name = check_dataset(dataset)
    split = check_split(split)
    if name == "omniglot":
        from ntk_bridge.data.omniglot import load_omniglot as loader
        args = (root, split)
    elif name in ("cifarfs", "fc100"):
        from ntk_bridge.data.cifar import load_cifar_split as loader
        args = (name, root, split)
    elif name == "miniimagenet":
        from ntk_bridge.data.miniimagenet import load_miniimagenet as loader
        args = (root, split)
    elif name == "imagefolder":
        from ntk_bridge.data.image_folder import load_image_folder as loader
        args = (root, split)
    else:
        from ntk_bridge.data.tieredimagenet import load_tieredimagenet as loader
        args = (root, split)
    import inspect
    accepted = [p.name for p in inspect.signature(loader).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BridgeError(f"unknown {name} option(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(accepted)}")
    return loader(*args, **options)
