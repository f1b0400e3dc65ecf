"""mini-ImageNet (Ravi & Larochelle split: 64/16/20 classes x 600 images, 84x84 RGB).

Three on-disk formats, tried in this order in ``root`` and in ``root/{mini-imagenet,
miniImageNet, miniimagenet}`` (``source=`` forces one):

* ``"cache"``: ``mini-imagenet-cache-{train,val,test}.pkl`` (the validation file may also be
  named ``mini-imagenet-cache-validation.pkl``): a dict with ``image_data`` uint8
  (N, 84, 84, 3) and ``class_dict`` {wnid: [row indices]}.
* ``"metaoptnet"``: ``miniImageNet_category_split_{train_phase_train,val,test}.pickle``
  (Python-2 pickles: ``data`` uint8 (N, 84, 84, 3), ``labels``, ``label2catname``).
* ``"csv"``: ``{train,val,test}.csv`` (``filename,label`` rows, e.g.
  ``n0153282900000005.jpg,n01532829``) with the JPEGs in ``images/``; decoded once (resized to
  ``image_size`` if they differ, PIL LANCZOS) into a memory-mapped ``.npy`` cache under
  ``root/.ntk_bridge_cache`` or ``cache_dir``.

Class ids are the wnids in sorted order; images keep the file order.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ntk_bridge.data.base import FewShotSplit, check_root, check_split
from ntk_bridge.data.formats import (
    as_uint8_images,
    cache_folder,
    cached_array,
    check_not_html,
    decode_image,
    get_key,
    missing_file_error,
    read_pickle,
)
from ntk_bridge.errors import BridgeError

__all__ = ["load_miniimagenet", "find_mini_source", "labels_from_class_dict"]

_SUBDIRS = ("mini-imagenet", "miniImageNet", "miniimagenet", "mini_imagenet")
_CACHE_NAMES = {"train": ("mini-imagenet-cache-train.pkl",),
                "val": ("mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"),
                "test": ("mini-imagenet-cache-test.pkl",)}
_MOPT_NAMES = {"train": "miniImageNet_category_split_train_phase_train.pickle",
               "val": "miniImageNet_category_split_val.pickle",
               "test": "miniImageNet_category_split_test.pickle"}


def _folders(root: Path) -> list[Path]:
    return [root] + [root / d for d in _SUBDIRS if (root / d).is_dir()]


def find_mini_source(root: Path, split: str, source: str | None = None) -> tuple[str, Path]:
    """(format, file) holding ``split``; a one-line error listing the accepted files if none."""
    if source not in (None, "cache", "metaoptnet", "csv"):
        raise BridgeError(f"unknown miniimagenet source {source!r}; choose cache, metaoptnet or csv")
    for folder in _folders(root):
        if source in (None, "cache"):
            for name in _CACHE_NAMES[split]:
                if (folder / name).is_file():
                    return "cache", folder / name
        if source in (None, "metaoptnet") and (folder / _MOPT_NAMES[split]).is_file():
            return "metaoptnet", folder / _MOPT_NAMES[split]
        if source in (None, "csv") and (folder / f"{split}.csv").is_file():
            return "csv", folder / f"{split}.csv"
    raise missing_file_error(f"mini-ImageNet {split}", root, [
        " or ".join(_CACHE_NAMES[split]),
        _MOPT_NAMES[split],
        f"{split}.csv with the JPEGs in images/"])


def labels_from_class_dict(class_dict, n: int, path: Path):
    """int64 (n,) labels (-1 for rows in no class) and wnid names from ``{wnid: [rows]}``."""
    if not isinstance(class_dict, dict) or not class_dict:
        raise BridgeError(f"{path.name}: class_dict must be a non-empty dict {{wnid: [rows]}}")
    names = tuple(sorted(str(k) for k in class_dict))
    by_name = {str(k): v for k, v in class_dict.items()}
    labels = np.full(n, -1, np.int64)
    for c, name in enumerate(names):
        rows = np.asarray(by_name[name], dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise BridgeError(f"{path.name}: class {name} lists rows {rows.min()}..{rows.max()} "
                              f"but image_data has {n} images; damaged file")
        if np.any(labels[rows] >= 0):
            raise BridgeError(f"{path.name}: class {name} shares rows with another class")
        labels[rows] = c
    return labels, names


def _from_cache(path: Path, split: str) -> FewShotSplit:
    obj = read_pickle(path, "a mini-ImageNet cache pickle")
    x = as_uint8_images(get_key(obj, "image_data", path), path, 84)
    labels, names = labels_from_class_dict(get_key(obj, "class_dict", path), x.shape[0], path)
    if np.any(labels < 0):
        keep = labels >= 0
        x, labels = x[keep], labels[keep]
    return FewShotSplit(x, labels, names, f"miniimagenet/{split}")


def _from_metaoptnet(path: Path, split: str) -> FewShotSplit:
    obj = read_pickle(path, f"the MetaOptNet {path.name}")
    x = as_uint8_images(get_key(obj, "data", path), path, 84)
    raw = np.asarray(get_key(obj, "labels", path))
    if raw.shape != (x.shape[0],) or not np.issubdtype(raw.dtype, np.integer):
        raise BridgeError(f"{path.name}: labels have shape {raw.shape} ({raw.dtype}), expected "
                          f"{x.shape[0]} integers")
    ids, dense = np.unique(raw, return_inverse=True)
    l2c = obj.get("label2catname") if isinstance(obj, dict) else None
    if l2c is None and isinstance(obj, dict) and "catname2label" in obj:
        l2c = {v: k for k, v in obj["catname2label"].items()}
    if isinstance(l2c, dict):
        names = tuple(str(l2c.get(int(i), f"class{int(i)}")) for i in ids)
    elif isinstance(l2c, (list, tuple)) and len(l2c) > int(ids.max()):
        names = tuple(str(l2c[int(i)]) for i in ids)
    else:
        names = tuple(f"class{int(i)}" for i in ids)
    return FewShotSplit(x, dense.astype(np.int64), names, f"miniimagenet/{split}")


def _read_csv(path: Path) -> list[tuple[str, str]]:
    check_not_html(path, f"the split file {path.name}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if rows and rows[0][:2] == ["filename", "label"]:
        rows = rows[1:]
    bad = [r for r in rows if len(r) != 2]
    if bad or not rows:
        raise BridgeError(f"{path.name}: expected `filename,label` rows, got "
                          f"{bad[0] if bad else 'no rows'}")
    return [(f.strip(), lab.strip()) for f, lab in rows]


def _from_csv(path: Path, split: str, image_size: int, cache_dir) -> FewShotSplit:
    rows = _read_csv(path)
    image_dir = path.parent / "images"
    if not image_dir.is_dir():
        raise BridgeError(f"{path.name} found but no images/ folder beside it in "
                          f"{str(path.parent)!r}; put the JPEGs in {str(image_dir)!r}")
    files = [image_dir / f for f, _ in rows]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise BridgeError(f"{len(missing)} images of {path.name} are missing, e.g. "
                          f"{missing[0].name} in {str(image_dir)!r}")
    names = tuple(sorted({lab for _, lab in rows}))
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[lab] for _, lab in rows], np.int64)

    def fill(out):
        from tqdm import tqdm
        for i, f in enumerate(tqdm(files, desc=f"decoding {split} JPEGs", disable=len(files) < 5000,
                                   leave=False)):
            try:
                out[i] = decode_image(f.read_bytes(), image_size, what=repr(str(f)))
            except OSError as err:
                raise BridgeError(f"{f.name} in {str(image_dir)!r} is not a readable image "
                                  f"({err}); replace it") from None

    folder = cache_folder(path.parent, "miniimagenet", cache_dir)
    x = cached_array(folder, f"mini_{split}_{image_size}", [path, image_dir],
                     (len(files), image_size, image_size, 3), fill)
    return FewShotSplit(x, labels, names, f"miniimagenet/{split}")


def load_miniimagenet(root, split: str, *, source: str | None = None, image_size: int = 84,
                      cache_dir=None) -> FewShotSplit:
    """Split ``split`` of mini-ImageNet from whichever format ``root`` holds (see module doc)."""
    split = check_split(split)
    root = check_root(root, "miniimagenet")
    fmt, path = find_mini_source(root, split, source)
    if fmt == "cache":
        return _from_cache(path, split)
    if fmt == "metaoptnet":
        return _from_metaoptnet(path, split)
    return _from_csv(path, split, int(image_size), cache_dir)
