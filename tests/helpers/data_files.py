"""Writers of small files in each exact on-disk format, for tests and the benchmark.

``dump_py2_pickle`` writes a pickle as Python 2 would: every ``bytes`` object (numpy buffers,
and keys / strings passed as bytes) becomes a Py2 ``str`` opcode (``SHORT_BINSTRING`` /
``BINSTRING``), and numpy globals are named ``numpy.core.multiarray``. Python 3 can only read
such a file with ``encoding='latin1'`` (or ``'bytes'``) -- the default ``'ASCII'`` fails on the
raw array bytes -- exactly like the MetaOptNet and tiered-ImageNet label pickles.
"""

from __future__ import annotations

import csv
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

__all__ = ["dump_py2_pickle", "write_cifar_archive", "write_cifar_metaoptnet",
           "write_mini_cache", "write_mini_metaoptnet", "write_mini_csv", "write_tiered_ren",
           "write_tiered_metaoptnet", "random_images"]


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us choose opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or "builtins"
        name = name or obj.__qualname__
        module = module.replace("numpy._core", "numpy.core")
        if module == "builtins":
            module = "__builtin__"
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def _py2(obj):
    """Turn str into bytes (Py2 ``str``) recursively, so they are written as BINSTRING."""
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, dict):
        return {_py2(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_py2(v) for v in obj)
    return obj


def dump_py2_pickle(obj, path: Path) -> Path:
    """Write ``obj`` as a Python-2 protocol-2 pickle (str -> Py2 str, numpy -> numpy.core)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(_py2(obj))
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def random_images(n: int, size: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """uint8 (n, size, size, channels) with a per-image constant offset so images differ."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (n, 1, 1, 1))
    return (base + rng.integers(0, 56, (n, size, size, channels))).astype(np.uint8)


# ---------------------------------------------------------------- CIFAR-100 based

def write_cifar_archive(root: Path, per_class_train: int = 5, per_class_test: int = 1,
                        seed: int = 0) -> Path:
    """A ``cifar-100-python.tar.gz`` with the official layout and keys (Py2-style pickles).

    Image ``i`` of fine class ``f`` has pixel [0, 0, 0] == f (to check the label mapping).
    """
    from ntk_bridge.data.cifar import CIFAR100_COARSE, CIFAR100_FINE, CIFAR100_SUPERCLASS
    coarse_of = {f: CIFAR100_COARSE.index(c) for c, fs in CIFAR100_SUPERCLASS.items() for f in fs}
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    members = {}
    for part, per in (("train", per_class_train), ("test", per_class_test)):
        fine = np.tile(np.arange(100), per)
        rng.shuffle(fine)
        x = rng.integers(0, 256, (fine.size, 3, 32, 32)).astype(np.uint8)
        x[:, 0, 0, 0] = fine
        d = {"data": x.reshape(fine.size, 3072), "fine_labels": [int(f) for f in fine],
             "coarse_labels": [coarse_of[CIFAR100_FINE[f]] for f in fine],
             "filenames": [f"img_{i}.png" for i in range(fine.size)], "batch_label": part}
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(_py2(d))
        members[part] = buf.getvalue()
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(_py2({"fine_label_names": list(CIFAR100_FINE),
                                            "coarse_label_names": list(CIFAR100_COARSE)}))
    members["meta"] = buf.getvalue()
    path = root / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_cifar_metaoptnet(root: Path, dataset: str, per_class: int = 3, seed: int = 0) -> list:
    """``CIFAR_FS_{split}.pickle`` / ``FC100_{split}.pickle`` (Py2; labels = fine ids)."""
    from ntk_bridge.data.cifar import CIFAR100_FINE, split_classes
    prefix = {"cifarfs": "CIFAR_FS", "fc100": "FC100"}[dataset]
    out = []
    for k, split in enumerate(("train", "val", "test")):
        ids = [CIFAR100_FINE.index(n) for n in split_classes(dataset, split)]
        labels = np.repeat(ids, per_class)
        x = random_images(labels.size, 32, seed + k)
        x[:, 0, 0, 0] = labels
        out.append(dump_py2_pickle({"data": x, "labels": [int(v) for v in labels]},
                                   Path(root) / f"{prefix}_{split}.pickle"))
    return out


# ---------------------------------------------------------------- mini-ImageNet

def _wnids(n: int, offset: int) -> list[str]:
    return [f"n{offset + i:08d}" for i in range(n)]


def write_mini_cache(root: Path, split: str, n_classes: int = 4, per_class: int = 3,
                     size: int = 84, seed: int = 0, val_name: str = "val",
                     protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    """``mini-imagenet-cache-{split}.pkl``: dict image_data (N, size, size, 3), class_dict.

    Rows are interleaved across classes; pixel [0, 0, 0] of a row is its class position.
    """
    n = n_classes * per_class
    x = random_images(n, size, seed)
    order = np.random.default_rng(seed).permutation(n)
    wn = _wnids(n_classes, 1000 * (1 + ("train", "val", "test").index(split)))
    class_dict = {w: sorted(int(r) for r in order[c * per_class:(c + 1) * per_class])
                  for c, w in enumerate(wn)}
    for c, w in enumerate(wn):
        x[class_dict[w], 0, 0, 0] = c
    name = f"mini-imagenet-cache-{val_name if split == 'val' else split}.pkl"
    path = Path(root) / name
    with open(path, "wb") as fh:
        pickle.dump({"image_data": x, "class_dict": class_dict}, fh, protocol=protocol)
    return path


def write_mini_metaoptnet(root: Path, split: str, n_classes: int = 4, per_class: int = 3,
                          seed: int = 0) -> Path:
    """``miniImageNet_category_split_*.pickle`` (Py2): data, labels, catname2label, label2catname."""
    from ntk_bridge.data.miniimagenet import _MOPT_NAMES
    offset = {"train": 0, "val": 64, "test": 80}[split]  # MetaOptNet keeps global label ids
    labels = np.repeat(np.arange(n_classes) + offset, per_class)
    x = random_images(labels.size, 84, seed)
    x[:, 0, 0, 0] = labels - offset
    wn = _wnids(n_classes, 5000 + offset)
    obj = {"data": x, "labels": [int(v) for v in labels],
           "catname2label": {w: i + offset for i, w in enumerate(wn)},
           "label2catname": {i + offset: w for i, w in enumerate(wn)}}
    return dump_py2_pickle(obj, Path(root) / _MOPT_NAMES[split])


def write_mini_csv(root: Path, split: str, n_classes: int = 3, per_class: int = 2,
                   size: int = 84, seed: int = 0) -> Path:
    """``{split}.csv`` (filename,label) and JPEGs ``images/<wnid><8 digits>.jpg``."""
    from PIL import Image
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    wn = _wnids(n_classes, 9000 + 100 * ("train", "val", "test").index(split))
    rows = []
    rng = np.random.default_rng(seed)
    for c, w in enumerate(wn):
        for i in range(per_class):
            name = f"{w}{i + 1:08d}.jpg"
            img = np.full((size, size, 3), 40 * c + 20, np.uint8)  # flat colour: JPEG-exact-ish
            img[..., 1] = rng.integers(0, 255)
            Image.fromarray(img).save(root / "images" / name, quality=95)
            rows.append((name, w))
    with open(root / f"{split}.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        writer.writerows(rows)
    return root / f"{split}.csv"


# ---------------------------------------------------------------- tiered-ImageNet

def write_tiered_ren(root: Path, split: str, n_classes: int = 3, per_class: int = 2,
                     size: int = 84, seed: int = 0) -> tuple[Path, Path]:
    """``{split}_images_png.pkl`` (list of PNG byte arrays) + Ren-style ``{split}_labels.pkl``."""
    from PIL import Image
    labels = np.repeat(np.arange(n_classes), per_class)
    x = random_images(labels.size, size, seed)
    x[:, 0, 0, 0] = labels
    pngs = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(np.frombuffer(buf.getvalue(), np.uint8))
    root = Path(root)
    img_path = root / f"{split}_images_png.pkl"
    with open(img_path, "wb") as fh:
        pickle.dump(pngs, fh, protocol=pickle.HIGHEST_PROTOCOL)
    general = labels // 2
    lab_path = dump_py2_pickle({
        "label_specific": labels, "label_general": general,
        "label_specific_str": [f"n{7000 + c:08d}" for c in range(n_classes)],
        "label_general_str": [f"n{8000 + g:08d}" for g in range(int(general.max()) + 1)],
    }, root / f"{split}_labels.pkl")
    return img_path, lab_path


def write_tiered_metaoptnet(root: Path, split: str, n_classes: int = 3, per_class: int = 2,
                            size: int = 84, seed: int = 0,
                            compressed: bool = False) -> tuple[Path, Path]:
    """``{split}_images.npz`` (key images) + MetaOptNet-style ``{split}_labels.pkl`` (key labels)."""
    labels = np.repeat(np.arange(n_classes), per_class)
    x = random_images(labels.size, size, seed)
    x[:, 0, 0, 0] = labels
    root = Path(root)
    img_path = root / f"{split}_images.npz"
    (np.savez_compressed if compressed else np.savez)(img_path, images=x)
    lab_path = dump_py2_pickle({"labels": labels}, root / f"{split}_labels.pkl")
    return img_path, lab_path
