"""Few-shot data layer: splits as uint8 arrays, episode / MTL-task samplers, augmentation.

    from ntk_bridge.data import FewShotSplit, load_split, DATASETS, dataset_stats
    split = load_split("omniglot", default_omniglot_root(), "train")

Importing this package is cheap (numpy only); loaders, JAX augmentation (``data.augment``) and
downloads (``data.download``) load on first use.
"""

from ntk_bridge.data.base import DATASETS, SPLITS, FewShotSplit, default_data_root, default_omniglot_root
from ntk_bridge.data.registry import dataset_stats, load_split

__all__ = ["DATASETS", "SPLITS", "FewShotSplit", "dataset_stats", "default_data_root",
           "default_omniglot_root", "load_split"]
