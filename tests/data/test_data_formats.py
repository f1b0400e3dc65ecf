"""Tiny files in each exact on-disk format, read back; one clear line for every bad input."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
from helpers.data_files import (
    dump_py2_pickle,
    write_cifar_archive,
    write_cifar_metaoptnet,
    write_mini_cache,
    write_mini_csv,
    write_mini_metaoptnet,
    write_tiered_metaoptnet,
    write_tiered_ren,
)

from ntk_bridge.data import load_split
from ntk_bridge.data.cifar import CIFAR100_FINE, CIFAR100_SUPERCLASS, CIFARFS_SPLIT, FC100_SPLIT
from ntk_bridge.data.formats import read_pickle
from ntk_bridge.errors import BridgeError

HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"


def _one_line(err):
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- pickles

def test_py2_pickle_needs_latin1_and_is_read(tmp_path):
    x = np.arange(256, dtype=np.uint8).reshape(2, 128)
    p = dump_py2_pickle({"data": x, "labels": [3, 4], "name": "caf\xe9"}, tmp_path / "a.pickle")
    with open(p, "rb") as fh, pytest.raises(UnicodeDecodeError):
        pickle.load(fh)  # default encoding='ASCII' cannot read it: the file is Py2-style
    obj = read_pickle(p)
    np.testing.assert_array_equal(obj["data"], x)
    assert obj["labels"] == [3, 4] and obj["name"] == "caf\xe9"


def test_pickle_bad_inputs_one_line(tmp_path):
    (tmp_path / "h.pkl").write_bytes(HTML)
    with pytest.raises(BridgeError, match=r"h.pkl in .* is an HTML page, not") as err:
        read_pickle(tmp_path / "h.pkl")
    _one_line(err)
    (tmp_path / "e.pkl").write_bytes(b"")
    with pytest.raises(BridgeError, match="is empty"):
        read_pickle(tmp_path / "e.pkl")
    good = pickle.dumps({"image_data": np.zeros((3, 4), np.uint8)}, protocol=4)
    (tmp_path / "t.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(BridgeError, match=r"t.pkl in .* is truncated"):
        read_pickle(tmp_path / "t.pkl")
    (tmp_path / "evil2.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(BridgeError, match=r"pickles code \(os.system\)"):
        read_pickle(tmp_path / "evil2.pkl")


# ---------------------------------------------------------------- CIFAR-FS / FC100

@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_archive(root, per_class_train=5, per_class_test=1)
    return root


@pytest.mark.parametrize("dataset,sizes", [("cifarfs", (64, 16, 20)), ("fc100", (60, 20, 20))])
def test_cifar_archive_splits(cifar_root, dataset, sizes):
    got = {s: load_split(dataset, cifar_root, s) for s in ("train", "val", "test")}
    assert tuple(got[s].num_classes for s in ("train", "val", "test")) == sizes
    names = [set(got[s].class_names) for s in ("train", "val", "test")]
    assert set.union(*names) == set(CIFAR100_FINE) and sum(map(len, names)) == 100
    if dataset == "cifarfs":
        assert names[1] == set(CIFARFS_SPLIT["val"]) and names[2] == set(CIFARFS_SPLIT["test"])
    else:
        assert names[2] == {f for s in FC100_SPLIT["test"] for f in CIFAR100_SUPERCLASS[s]}
    for _, sp in got.items():
        assert sp.image_shape == (32, 32, 3) and sp.images.dtype == np.uint8
        assert np.all(sp.class_counts() == 6)  # train (5) and test (1) pooled
        fine_id = np.array([CIFAR100_FINE.index(sp.class_names[c]) for c in sp.labels])
        np.testing.assert_array_equal(sp.images[:, 0, 0, 0], fine_id)  # channel-major decoded


def test_cifar_metaoptnet_pickles(tmp_path, cifar_root):
    write_cifar_metaoptnet(tmp_path, "cifarfs", per_class=3)
    for s in ("train", "val", "test"):
        sp = load_split("cifarfs", tmp_path, s)
        ref = load_split("cifarfs", cifar_root, s)
        assert sp.class_names == ref.class_names and np.all(sp.class_counts() == 3)
        fine_id = np.array([CIFAR100_FINE.index(sp.class_names[c]) for c in sp.labels])
        np.testing.assert_array_equal(sp.images[:, 0, 0, 0], fine_id)


def test_cifar_bad_inputs(tmp_path):
    with pytest.raises(BridgeError, match=r"no cifarfs train data in .*cifar-100-python.tar.gz"):
        load_split("cifarfs", tmp_path, "train")
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(HTML)
    with pytest.raises(BridgeError, match="is an HTML page"):
        load_split("fc100", tmp_path, "val")
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b" + b"\0" * 50)
    with pytest.raises(BridgeError, match="truncated or not a tar.gz"):
        load_split("fc100", tmp_path, "val")
    dump_py2_pickle({"data": np.zeros((2, 32, 32), np.uint8), "labels": [0, 1]},
                    tmp_path / "CIFAR_FS_val.pickle")
    with pytest.raises(BridgeError, match=r"CIFAR_FS_val.pickle: data has shape \(2, 32, 32\)"):
        load_split("cifarfs", tmp_path, "val")


# ---------------------------------------------------------------- mini-ImageNet

@pytest.mark.parametrize("val_name", ["val", "validation"])
def test_mini_cache_pickles(tmp_path, val_name):
    for k, s in enumerate(("train", "val", "test")):
        write_mini_cache(tmp_path, s, n_classes=3 + k, per_class=4, seed=k, val_name=val_name)
    for k, s in enumerate(("train", "val", "test")):
        sp = load_split("miniimagenet", tmp_path, s)
        assert sp.num_classes == 3 + k and np.all(sp.class_counts() == 4)
        assert sp.image_shape == (84, 84, 3)
        np.testing.assert_array_equal(sp.images[:, 0, 0, 0], sp.labels)  # rows interleaved
        assert list(sp.class_names) == sorted(sp.class_names)


def test_mini_metaoptnet_pickles(tmp_path):
    for s in ("train", "val", "test"):
        write_mini_metaoptnet(tmp_path / "miniImageNet", s, n_classes=3, per_class=2) \
            if (tmp_path / "miniImageNet").mkdir(exist_ok=True) is None else None
    val = load_split("miniimagenet", tmp_path, "val")
    assert val.num_classes == 3 and val.class_names == ("n00005064", "n00005065", "n00005066")
    np.testing.assert_array_equal(val.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(val.images[:, 0, 0, 0], val.labels)


def test_mini_jpeg_csv_cached_memmap(tmp_path):
    write_mini_csv(tmp_path, "test", n_classes=3, per_class=2, size=84)
    sp = load_split("miniimagenet", tmp_path, "test")
    assert sp.num_classes == 3 and len(sp) == 6 and isinstance(sp.images, np.memmap)
    np.testing.assert_array_equal(sp.labels, [0, 0, 1, 1, 2, 2])
    # flat colour images: red channel 40c+20 survives JPEG within a few levels
    assert np.all(np.abs(sp.images[:, 40, 40, 0].astype(int) - (40 * sp.labels + 20)) <= 3)
    assert (tmp_path / ".ntk_bridge_cache" / "mini_test_84.npy").is_file()
    again = load_split("miniimagenet", tmp_path, "test")  # from the cache
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(sp.images))
    # resize on the fly when the JPEGs are bigger, into a user cache dir
    write_mini_csv(tmp_path / "big", "val", n_classes=2, per_class=1, size=100)
    big = load_split("miniimagenet", tmp_path / "big", "val", cache_dir=tmp_path / "c")
    assert big.image_shape == (84, 84, 3)
    assert (tmp_path / "c" / "miniimagenet" / "mini_val_84.npy").is_file()


def test_mini_bad_inputs(tmp_path):
    with pytest.raises(BridgeError, match=r"no mini-ImageNet val files found in .*: put there "
                                          r"mini-imagenet-cache-val.pkl or mini-imagenet-cache-"
                                          r"validation.pkl; or miniImageNet") as err:
        load_split("miniimagenet", tmp_path, "val")
    _one_line(err)
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(HTML)
    with pytest.raises(BridgeError, match="mini-imagenet-cache-train.pkl in .* is an HTML page"):
        load_split("miniimagenet", tmp_path, "train")
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as fh:
        pickle.dump({"image_data": np.zeros((2, 84, 84), np.uint8), "class_dict": {"a": [0, 1]}},
                    fh)
    with pytest.raises(BridgeError, match=r"images have shape \(2, 84, 84\), expected "
                                          r"\(N, 84, 84, 3\)"):
        load_split("miniimagenet", tmp_path, "test")
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as fh:
        pickle.dump({"image_data": np.zeros((2, 84, 84, 3), np.float32), "class_dict": {}}, fh)
    with pytest.raises(BridgeError, match="dtype float32, expected uint8"):
        load_split("miniimagenet", tmp_path, "test")
    write_mini_csv(tmp_path / "csv", "val", n_classes=2, per_class=1)
    os.unlink(next((tmp_path / "csv" / "images").iterdir()))
    with pytest.raises(BridgeError, match=r"1 images of val.csv are missing, e.g. n\d+.jpg"):
        load_split("miniimagenet", tmp_path / "csv", "val")


# ---------------------------------------------------------------- tiered-ImageNet

def test_tiered_ren_format_decoded_once_into_memmap(tmp_path):
    write_tiered_ren(tmp_path, "val", n_classes=3, per_class=2)
    sp = load_split("tieredimagenet", tmp_path, "val")
    assert isinstance(sp.images, np.memmap) and not sp.images.flags.writeable
    assert sp.class_names == ("n00007000", "n00007001", "n00007002")
    np.testing.assert_array_equal(sp.images[:, 0, 0, 0], sp.labels)  # PNG is lossless
    cache = tmp_path / ".ntk_bridge_cache" / "val_images_png.npy"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    load_split("tieredimagenet", tmp_path, "val")
    assert cache.stat().st_mtime_ns == stamp  # not decoded again
    assert not [p for p in cache.parent.iterdir() if ".tmp" in p.name]  # atomic, no leftovers


@pytest.mark.parametrize("compressed", [False, True])
def test_tiered_metaoptnet_format(tmp_path, compressed):
    write_tiered_metaoptnet(tmp_path / "tiered-imagenet", "test", n_classes=4, per_class=3,
                            compressed=compressed) if (tmp_path / "tiered-imagenet").mkdir() is None \
        else None
    sp = load_split("tieredimagenet", tmp_path, "test", cache_dir=tmp_path / "cache")
    assert sp.num_classes == 4 and len(sp) == 12 and isinstance(sp.images, np.memmap)
    assert sp.class_names == ("class000", "class001", "class002", "class003")
    np.testing.assert_array_equal(sp.images[:, 0, 0, 0], sp.labels)
    with np.load(tmp_path / "tiered-imagenet" / "test_images.npz") as z:
        np.testing.assert_array_equal(np.asarray(sp.images), z["images"])
    cached = (tmp_path / "cache" / "tieredimagenet" / "test_images_images.npy").is_file()
    assert cached == compressed  # stored npz members are mapped in place, not copied


def test_tiered_label_variants_swap_and_bad_inputs(tmp_path):
    # Ren-style labels beside MetaOptNet images: detected by key
    write_tiered_metaoptnet(tmp_path, "train", n_classes=2, per_class=2)
    dump_py2_pickle({"label_specific": np.array([0, 0, 1, 1]), "label_general": np.zeros(4, int),
                     "label_specific_str": ["n01", "n02"], "label_general_str": ["g"]},
                    tmp_path / "train_labels.pkl")
    assert load_split("tieredimagenet", tmp_path, "train").class_names == ("n01", "n02")
    dump_py2_pickle({"label_specific": np.arange(3)}, tmp_path / "train_labels.pkl")
    with pytest.raises(BridgeError, match="has 4 images but train_labels.pkl has 3 labels"):
        load_split("tieredimagenet", tmp_path, "train")
    dump_py2_pickle({"lbl": [0]}, tmp_path / "train_labels.pkl")
    with pytest.raises(BridgeError, match=r"neither label_specific \(Ren et al.\) nor labels"):
        load_split("tieredimagenet", tmp_path, "train")
    os.unlink(tmp_path / "train_labels.pkl")
    with pytest.raises(BridgeError, match="train_labels.pkl is missing"):
        load_split("tieredimagenet", tmp_path, "train")
    with pytest.raises(BridgeError, match=r"put there val_images_png.pkl \(Ren et al.\); or "
                                          r"val_images.npz"):
        load_split("tieredimagenet", tmp_path, "val")
    (tmp_path / "test_images.npz").write_bytes(HTML)
    dump_py2_pickle({"labels": [0]}, tmp_path / "test_labels.pkl")
    with pytest.raises(BridgeError, match="test_images.npz in .* is an HTML page"):
        load_split("tieredimagenet", tmp_path, "test")
    with zipfile.ZipFile(tmp_path / "test_images.npz", "w") as zf:
        zf.writestr("data.npy", b"")
    with pytest.raises(BridgeError, match=r"has no array 'images' \(arrays: data\)"):
        load_split("tieredimagenet", tmp_path, "test")
    # truncated stored npz
    write_tiered_metaoptnet(tmp_path / "tr", "val") if (tmp_path / "tr").mkdir() is None else None
    npz = tmp_path / "tr" / "val_images.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(BridgeError, match="val_images.npz"):
        load_split("tieredimagenet", tmp_path / "tr", "val")


def test_unwritable_cache_dir_is_one_line(tmp_path):
    write_tiered_ren(tmp_path, "val")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BridgeError, match=r"cannot write the decoded-array cache .*cache_dir"):
        load_split("tieredimagenet", tmp_path, "val", cache_dir=blocker)
