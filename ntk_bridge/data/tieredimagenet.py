"""tiered-ImageNet (351/97/160 classes, 84x84 RGB), decoded once into a memory-mapped cache.

Files looked for in ``root`` and ``root/{tiered-imagenet, tieredImageNet, tiered_imagenet}``:

* images, either ``{split}_images_png.pkl`` (Ren et al.: a sequence of PNG-encoded byte
  arrays; decoded once with PIL into ``<cache>/{split}_images_png.npy``) or
  ``{split}_images.npz`` (MetaOptNet: key ``images`` uint8 (N, 84, 84, 3); memory-mapped in
  place when stored uncompressed, else streamed once into ``<cache>/{split}_images_images.npy``);
* labels ``{split}_labels.pkl`` (Python-2 pickle), one of two variants told apart by key:
  Ren (``label_specific``, ``label_general``, ``label_specific_str``, ``label_general_str``) or
  MetaOptNet (``labels``; class names ``label_specific_str`` if present, else ``classNNN``).

``<cache>`` is ``root/.ntk_bridge_cache`` or ``cache_dir/tieredimagenet``; cache files are
written with ``np.lib.format.open_memmap`` under a temp name and renamed. The returned split's
images are a read-only ``np.memmap``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ntk_bridge.data.base import FewShotSplit, check_root, check_split
from ntk_bridge.data.formats import (
    _stamp,
    cache_folder,
    cached_array,
    decode_image,
    encode_bytes,
    get_key,
    missing_file_error,
    npz_member_array,
    read_pickle,
)
from ntk_bridge.errors import BridgeError

__all__ = ["load_tieredimagenet", "read_tiered_labels"]

_SUBDIRS = ("tiered-imagenet", "tieredImageNet", "tiered_imagenet", "tieredimagenet")


def _find(root: Path, name: str) -> Path | None:
    for folder in [root] + [root / d for d in _SUBDIRS]:
        if (folder / name).is_file():
            return folder / name
    return None


def read_tiered_labels(path: Path) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Dense int64 labels, class names and the variant ("ren" or "metaoptnet") of a labels pkl."""
    obj = read_pickle(path, "a tiered-ImageNet labels pickle")
    if not isinstance(obj, dict):
        raise BridgeError(f"{path.name} holds a {type(obj).__name__}, expected a dict with "
                          "label_specific or labels")
    keys = {k.decode() if isinstance(k, bytes) else k for k in obj}
    if "label_specific" in keys:
        variant, raw = "ren", get_key(obj, "label_specific", path)
    elif "labels" in keys:
        variant, raw = "metaoptnet", get_key(obj, "labels", path)
    else:
        raise BridgeError(f"{path.name} has neither label_specific (Ren et al.) nor labels "
                          f"(MetaOptNet) (keys: {', '.join(sorted(map(str, keys)))})")
    raw = np.asarray(raw)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise BridgeError(f"{path.name}: labels have shape {raw.shape} ({raw.dtype}), expected "
                          "a 1-d integer array")
    ids, dense = np.unique(raw, return_inverse=True)
    strs = None
    if "label_specific_str" in keys:
        strs = [s.decode() if isinstance(s, bytes) else str(s)
                for s in get_key(obj, "label_specific_str", path)]
    if strs is not None and len(strs) > int(ids.max()):
        names = tuple(strs[int(i)] for i in ids)
    else:
        names = tuple(f"class{int(i):03d}" for i in ids)
    return dense.astype(np.int64), names, variant


def _decode_png_pickle(path: Path, folder: Path, split: str) -> np.ndarray:
    """Decode the Ren et al. PNG list once into a cached (N, 84, 84, 3) uint8 memmap."""
    cached = folder / f"{split}_images_png.npy"
    meta = folder / f"{split}_images_png.json"
    items = None
    fresh = False
    if cached.is_file() and meta.is_file():
        try:
            fresh = json.loads(meta.read_text())["sources"] == _stamp([path])
        except (OSError, ValueError, KeyError):
            fresh = False
    if fresh:
        shape = tuple(np.load(cached, mmap_mode="r").shape)
    else:
        items = read_pickle(path, "a tiered-ImageNet PNG pickle")
        if isinstance(items, dict):
            items = get_key(items, "images", path)
        if not hasattr(items, "__len__") or len(items) == 0:
            raise BridgeError(f"{path.name}: expected a non-empty sequence of PNG bytes")
        first = decode_image(encode_bytes(items[0]), None, what=f"0 of {path}")
        shape = (len(items),) + first.shape

    def fill(out):
        from tqdm import tqdm
        nonlocal items
        if items is None:
            items = read_pickle(path, "a tiered-ImageNet PNG pickle")
        for i in tqdm(range(shape[0]), desc=f"decoding {path.name}", leave=False,
                      disable=shape[0] < 5000):
            try:
                img = decode_image(encode_bytes(items[i]), None, what=f"{i} of {path}")
            except OSError as err:
                raise BridgeError(f"{path.name}: image {i} is not a PNG ({err}); damaged "
                                  "file, download it again") from None
            if img.shape != shape[1:]:
                raise BridgeError(f"{path.name}: image {i} has shape {img.shape}, the first "
                                  f"has {shape[1:]}")
            out[i] = img

    return cached_array(folder, f"{split}_images_png", [path], shape, fill)


def load_tieredimagenet(root, split: str, *, source: str | None = None,
                        cache_dir=None) -> FewShotSplit:
    """Split ``split`` of tiered-ImageNet; images come back as a read-only memmap."""
    split = check_split(split)
    root = check_root(root, "tieredimagenet")
    if source not in (None, "ren", "metaoptnet"):
        raise BridgeError(f"unknown tieredimagenet source {source!r}; choose ren or metaoptnet")
    png = _find(root, f"{split}_images_png.pkl") if source in (None, "ren") else None
    npz = _find(root, f"{split}_images.npz") if source in (None, "metaoptnet") else None
    image_file = png or npz
    if image_file is None:
        raise missing_file_error(f"tiered-ImageNet {split}", root, [
            f"{split}_images_png.pkl (Ren et al.)", f"{split}_images.npz (MetaOptNet)"])
    labels_file = image_file.parent / f"{split}_labels.pkl"
    if not labels_file.is_file():
        raise BridgeError(f"{image_file.name} found but {labels_file.name} is missing in "
                          f"{str(image_file.parent)!r}; put it there")
    labels, names, _ = read_tiered_labels(labels_file)
    folder = cache_folder(image_file.parent, "tieredimagenet", cache_dir)
    if png is not None:
        x = _decode_png_pickle(png, folder, split)
    else:
        x = npz_member_array(npz, "images", folder)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise BridgeError(f"{image_file.name}: images have shape {x.shape} {x.dtype}, expected "
                          "(N, 84, 84, 3) uint8")
    if x.shape[0] != labels.shape[0]:
        raise BridgeError(f"{image_file.name} has {x.shape[0]} images but {labels_file.name} "
                          f"has {labels.shape[0]} labels; the two files do not belong together")
    return FewShotSplit(x, labels, names, f"tieredimagenet/{split}")
