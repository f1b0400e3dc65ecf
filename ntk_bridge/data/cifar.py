"""CIFAR-FS and FC100 from ``cifar-100-python.tar.gz`` or from the MetaOptNet pickles.

Both use all 60,000 CIFAR-100 images (train + test pooled by fine class, 600 per class, 32x32).
CIFAR-FS: 64/16/20 classes, the val/test class lists of docs/benchmarks.md, train the
other 64. FC100: 12/4/4 superclasses (60/20/20 classes). In a split, class ids follow the
CIFAR-100 fine label order (alphabetical), images the archive order (train file, then test).

Sources, in the order tried (``source=`` forces one):
* ``"metaoptnet"``: ``CIFAR_FS_{train,val,test}.pickle`` / ``FC100_{train,val,test}.pickle``
  (Python-2 pickles, ``data`` uint8 (N, 32, 32, 3), ``labels`` = CIFAR-100 fine ids), looked for
  in ``root`` and ``root/CIFAR-FS`` / ``root/FC100``;
* ``"archive"``: ``cifar-100-python.tar.gz`` (md5 eb9058c3a382ffc7106e4002c42a8d85) in ``root``,
  or its extracted folder ``root/cifar-100-python/{train,test,meta}``.
"""

from __future__ import annotations

import tarfile
import threading
from pathlib import Path

import numpy as np

from ntk_bridge.data.base import FewShotSplit, check_root, check_split
from ntk_bridge.data.formats import check_not_html, get_key, loads_data_pickle, read_pickle
from ntk_bridge.errors import BridgeError

__all__ = ["CIFAR100_FINE", "CIFAR100_COARSE", "CIFAR100_SUPERCLASS", "CIFARFS_SPLIT",
           "FC100_SPLIT", "CIFAR_ARCHIVE", "CIFAR_MD5", "CIFAR_URL", "split_classes",
           "load_cifar_split", "read_cifar_archive"]

CIFAR_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

# CIFAR-100 fine label names, in label-id order (the archive's meta file lists the same).
CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()

# superclass -> its five fine classes
CIFAR100_SUPERCLASS: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE = tuple(sorted(CIFAR100_SUPERCLASS))

CIFARFS_SPLIT = {
    "val": ("beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly",
            "sea", "camel", "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor"),
    "test": ("whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe",
             "leopard", "plain", "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman",
             "bicycle", "pickup_truck", "rocket"),
}
FC100_SPLIT = {  # superclasses
    "train": ("fish", "flowers", "food_containers", "fruit_and_vegetables",
              "household_electrical_devices", "household_furniture",
              "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "reptiles", "trees",
              "vehicles_1", "vehicles_2"),
    "val": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
            "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}

_PICKLE_PREFIX = {"cifarfs": "CIFAR_FS", "fc100": "FC100"}
_SUBDIRS = {"cifarfs": ("CIFAR-FS", "CIFAR_FS", "cifar-fs", "cifarfs"), "fc100": ("FC100", "fc100")}
_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, tuple[str, ...]]] = {}
_LOCK = threading.Lock()


def split_classes(dataset: str, split: str, fine_names=CIFAR100_FINE,
                  fine_to_coarse: dict[str, str] | None = None) -> tuple[str, ...]:
    """Fine class names of ``split`` in fine-id order (``fine_names`` order)."""
    if dataset == "cifarfs":
        if split == "train":
            held = set(CIFARFS_SPLIT["val"]) | set(CIFARFS_SPLIT["test"])
            return tuple(n for n in fine_names if n not in held)
        wanted = set(CIFARFS_SPLIT[split])
        return tuple(n for n in fine_names if n in wanted)
    if fine_to_coarse is None:
        fine_to_coarse = {f: c for c, fs in CIFAR100_SUPERCLASS.items() for f in fs}
    supers = set(FC100_SPLIT[split])
    return tuple(n for n in fine_names if fine_to_coarse[n] in supers)


def _find_pickle(dataset: str, root: Path, split: str) -> Path | None:
    name = f"{_PICKLE_PREFIX[dataset]}_{split}.pickle"
    for folder in (root, *(root / d for d in _SUBDIRS[dataset])):
        if (folder / name).is_file():
            return folder / name
    return None


def _from_metaoptnet(dataset: str, path: Path, split: str) -> FewShotSplit:
    what = f"the MetaOptNet {path.name}"
    obj = read_pickle(path, what)
    data = get_key(obj, "data", path)
    labels = np.asarray(get_key(obj, "labels", path))
    if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[1:] != (32, 32, 3):
        raise BridgeError(f"{path.name}: data has shape {getattr(data, 'shape', None)}, "
                          "expected (N, 32, 32, 3)")
    if data.dtype != np.uint8:
        raise BridgeError(f"{path.name}: data has dtype {data.dtype}, expected uint8")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise BridgeError(f"{path.name}: labels have shape {labels.shape} ({labels.dtype}), "
                          f"expected {data.shape[0]} integers")
    if labels.min() < 0 or labels.max() > 99:
        raise BridgeError(f"{path.name}: labels run {labels.min()}..{labels.max()}, expected "
                          "CIFAR-100 fine ids 0..99")
    fine_ids, dense = np.unique(labels, return_inverse=True)
    names = tuple(CIFAR100_FINE[i] for i in fine_ids)
    expected = split_classes(dataset, split)
    if set(names) != set(expected):
        raise BridgeError(f"{path.name}: classes {len(names)} do not match the {dataset} {split} "
                          f"split ({len(expected)} classes); is it the right file?")
    return FewShotSplit(np.ascontiguousarray(data), dense.astype(np.int64), names,
                        f"{dataset}/{split}")


def _unpickle_bytes(data: bytes, what: str):
    try:
        return loads_data_pickle(data)
    except Exception as err:  # noqa: BLE001 - any failure means a damaged member
        raise BridgeError(f"{what} is damaged ({type(err).__name__}); download "
                          f"{CIFAR_ARCHIVE} again") from None


def read_cifar_archive(root: Path):
    """Pooled CIFAR-100: images uint8 (60000, 32, 32, 3), fine int64, fine names, coarse map.

    Reads ``cifar-100-python.tar.gz`` (or the extracted ``cifar-100-python/`` folder).
    Returns (images, fine_labels, fine_names, fine_to_coarse dict).
    """
    archive = root / CIFAR_ARCHIVE
    folder = root / "cifar-100-python"
    members: dict[str, bytes] = {}
    if archive.is_file():
        check_not_html(archive, CIFAR_ARCHIVE)
        try:
            with tarfile.open(archive, "r:gz") as tf:
                for m in tf.getmembers():
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in ("train", "test", "meta"):
                        members[base] = tf.extractfile(m).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise BridgeError(f"{CIFAR_ARCHIVE} in {str(root)!r} is truncated or not a tar.gz "
                              f"({err}); download it again (md5 {CIFAR_MD5})") from None
        src = archive
    elif folder.is_dir():
        for base in ("train", "test", "meta"):
            if (folder / base).is_file():
                check_not_html(folder / base, f"cifar-100-python/{base}")
                members[base] = (folder / base).read_bytes()
        src = folder
    else:
        return None
    missing = [b for b in ("train", "test", "meta") if b not in members]
    if missing:
        raise BridgeError(f"{src.name} lacks cifar-100-python/{', '.join(missing)}; download "
                          f"{CIFAR_ARCHIVE} again")
    meta = _unpickle_bytes(members["meta"], f"{src.name}:meta")
    fine_names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                       for n in get_key(meta, "fine_label_names", Path("meta")))
    coarse_names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                         for n in get_key(meta, "coarse_label_names", Path("meta")))
    images, fine, coarse = [], [], []
    for part in ("train", "test"):
        d = _unpickle_bytes(members[part], f"{src.name}:{part}")
        x = np.asarray(get_key(d, "data", Path(part)))
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise BridgeError(f"cifar-100-python/{part}: data has shape {x.shape} {x.dtype}, "
                              "expected (N, 3072) uint8")
        images.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        fine.append(np.asarray(get_key(d, "fine_labels", Path(part)), np.int64))
        coarse.append(np.asarray(get_key(d, "coarse_labels", Path(part)), np.int64))
    x = np.ascontiguousarray(np.concatenate(images))
    f = np.concatenate(fine)
    c = np.concatenate(coarse)
    if not (f.shape == c.shape == (x.shape[0],)):
        raise BridgeError(f"{src.name}: {x.shape[0]} images but {f.shape[0]} labels")
    fine_to_coarse = {}
    for fi, ci in set(zip(f.tolist(), c.tolist())):
        name = fine_names[fi]
        if fine_to_coarse.setdefault(name, coarse_names[ci]) != coarse_names[ci]:
            raise BridgeError(f"{src.name}: class {name} has two superclasses; damaged file")
    return x, f, fine_names, fine_to_coarse


def _from_archive(dataset: str, root: Path, split: str) -> FewShotSplit | None:
    src = root / CIFAR_ARCHIVE
    stamp_src = src if src.is_file() else root / "cifar-100-python" / "train"
    if not stamp_src.is_file():
        return None
    key = (str(stamp_src.resolve()), stamp_src.stat().st_size, stamp_src.stat().st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        got = read_cifar_archive(root)
        if got is None:
            return None
        hit = got
        with _LOCK:
            _CACHE.clear()  # keep one pooled copy (180 MB) per process
            _CACHE[key] = hit
    x, f, fine_names, fine_to_coarse = hit
    unknown = set(CIFARFS_SPLIT["val"]) | set(CIFARFS_SPLIT["test"])
    if dataset == "fc100":
        unknown = {s for s in FC100_SPLIT[split] if s not in set(fine_to_coarse.values())}
    else:
        unknown -= set(fine_names)
    if unknown:
        raise BridgeError(f"the CIFAR-100 archive in {str(root)!r} lacks {dataset} classes "
                          f"{', '.join(sorted(unknown))}; it is not the official archive")
    names = split_classes(dataset, split, fine_names, fine_to_coarse)
    ids = np.array([fine_names.index(n) for n in names], np.int64)
    keep = np.isin(f, ids)
    remap = np.full(len(fine_names), -1, np.int64)
    remap[ids] = np.arange(ids.size)
    return FewShotSplit(x[keep], remap[f[keep]], names, f"{dataset}/{split}")


def load_cifar_split(dataset: str, root, split: str, *, source: str | None = None,
                     cache_dir=None) -> FewShotSplit:
    """Split ``split`` of CIFAR-FS (``dataset="cifarfs"``) or FC100 (``"fc100"``) from ``root``.

    ``cache_dir`` is accepted for a uniform API; CIFAR decodes in seconds and is not cached on
    disk (one pooled copy is kept in memory per process).
    """
    del cache_dir
    split = check_split(split)
    root = check_root(root, dataset)
    if source not in (None, "metaoptnet", "archive"):
        raise BridgeError(f"unknown {dataset} source {source!r}; choose metaoptnet or archive")
    if source in (None, "metaoptnet"):
        path = _find_pickle(dataset, root, split)
        if path is not None:
            return _from_metaoptnet(dataset, path, split)
    if source in (None, "archive"):
        got = _from_archive(dataset, root, split)
        if got is not None:
            return got
    prefix = _PICKLE_PREFIX[dataset]
    raise BridgeError(f"no {dataset} {split} data in {str(root)!r}: put {CIFAR_ARCHIVE} there "
                      f"(from {CIFAR_URL}, or `ntk-bridge data info --dataset {dataset} --root "
                      f"DIR --download`), or the MetaOptNet pickle {prefix}_{split}.pickle")
