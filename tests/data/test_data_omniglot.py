"""Omniglot from the official zips: real data (skipped if absent) and tiny zips in the same format."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ntk_bridge.data import FewShotSplit, default_omniglot_root, load_split
from ntk_bridge.data.omniglot import SMALL_SPLIT, find_omniglot_zips, omniglot_alphabet_split, omniglot_index
from ntk_bridge.errors import BridgeError

REAL = default_omniglot_root()
HAVE_REAL = all((REAL / f"images_background_small{k}.zip").is_file() for k in (1, 2))
real = pytest.mark.skipif(not HAVE_REAL, reason=f"real Omniglot small zips not found in {REAL} "
                          "(set NTK_BRIDGE_DATA to the folder holding omniglot/)")


@real
def test_real_small_zips_dedup_to_242_characters_8_alphabets():
    index = omniglot_index(find_omniglot_zips(REAL))
    assert len(index) == 242
    alphabets = {a for a, _ in index}
    assert len(alphabets) == 8
    assert all(len(members) == 20 for _, members, _ in index.values())
    # Greek and Latin come from both zips: kept once
    assert sum(1 for a, _ in index if a == "Greek") == 24
    assert sum(1 for a, _ in index if a == "Latin") == 26


@real
def test_real_default_split_by_alphabet():
    splits = {s: load_split("omniglot", REAL, s) for s in ("train", "val", "test")}
    sizes = {s: (sp.num_classes, len(sp)) for s, sp in splits.items()}
    assert sizes == {"train": (163, 3260), "val": (17, 340), "test": (62, 1240)}
    assert sum(c for c, _ in sizes.values()) == 242 and sum(n for _, n in sizes.values()) == 4840
    alph = {s: {n.split("/")[0] for n in sp.class_names} for s, sp in splits.items()}
    assert alph == {s: set(v) for s, v in SMALL_SPLIT.items()}
    for s, sp in splits.items():
        assert sp.images.dtype == np.uint8 and sp.image_shape == (28, 28, 1)
        assert sp.labels.dtype == np.int64 and np.all(sp.class_counts() == 20)
        assert sp.name == f"omniglot/{s}"
        # inverted: background black, strokes bright (strokes cover well under half the pixels)
        assert np.median(sp.images) == 0 and sp.images.max() == 255
        assert 0.03 < sp.images.mean() / 255 < 0.2


@real
def test_real_rotations_are_new_classes():
    base = load_split("omniglot", REAL, "val")
    rot = load_split("omniglot", REAL, "val", rotations=True)
    c = base.num_classes
    assert rot.num_classes == 4 * c and len(rot) == 4 * len(base)
    for r in range(4):
        sel = rot.labels == r * c + 3
        np.testing.assert_array_equal(rot.images[sel], np.rot90(base.images[base.labels == 3], r,
                                                                axes=(1, 2)))
        assert rot.class_names[r * c + 3] == f"{base.class_names[3]}/rot{r * 90:03d}"


@real
def test_real_image_size_option():
    sp = load_split("omniglot", REAL, "val", image_size=105, invert=False)
    assert sp.image_shape == (105, 105, 1)
    assert set(np.unique(sp.images)) <= {0, 255}  # original 1-bit pixels, no resize
    assert np.median(sp.images) == 255  # white background when not inverted


# ---------------------------------------------------------------- tiny zips in the exact format

def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((105, 105)) > 0.1).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, stem: str, chars: dict[str, int], drawers: int = 3, salt: int = 0):
    """chars: alphabet -> number of characters; drawer images seeded by (alphabet, char, drawer)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{stem}/", "")
        for alphabet, n in chars.items():
            for c in range(1, n + 1):
                for d in range(1, drawers + 1):
                    seed = zlib.crc32(f"{alphabet}/{c}/{d}/{salt}".encode())
                    zf.writestr(f"{stem}/{alphabet}/character{c:02d}/{1000 + d:04d}_{c:02d}.png",
                                _png(seed))


def test_small_zips_dedupe_and_default_split(tmp_path):
    _write_zip(tmp_path / "images_background_small1.zip", "images_background_small1",
               {"Balinese": 2, "Greek": 2, "Korean": 3, "Latin": 1, "Early_Aramaic": 2})
    _write_zip(tmp_path / "images_background_small2.zip", "images_background_small2",
               {"Greek": 2, "Latin": 1, "Sanskrit": 2, "Tagalog": 2, "Japanese_(katakana)": 1})
    index = omniglot_index(find_omniglot_zips(tmp_path))
    assert len(index) == 2 + 2 + 3 + 1 + 2 + 2 + 2 + 1
    tr = load_split("omniglot", tmp_path, "train", image_size=12)
    te = load_split("omniglot", tmp_path, "test", image_size=12)
    assert tr.num_classes == 2 + 2 + 1 + 1 + 2 and len(tr) == 8 * 3
    assert te.class_names == ("Early_Aramaic/character01", "Early_Aramaic/character02",
                              "Korean/character01", "Korean/character02", "Korean/character03")
    assert tr.image_shape == (12, 12, 1)


def test_duplicate_that_differs_is_an_error(tmp_path):
    _write_zip(tmp_path / "images_background_small1.zip", "images_background_small1", {"Greek": 1})
    _write_zip(tmp_path / "images_background_small2.zip", "images_background_small2", {"Greek": 1},
               salt=1)
    with pytest.raises(BridgeError, match=r"Greek/character01 .* differ in 1001_01.png"):
        omniglot_index(find_omniglot_zips(tmp_path))


def test_full_zips_background_train_val_evaluation_test(tmp_path):
    bg = {f"Alpha{i:02d}": 1 for i in range(12)}
    _write_zip(tmp_path / "images_background.zip", "images_background", bg, drawers=2)
    _write_zip(tmp_path / "images_evaluation.zip", "images_evaluation", {"Zeta": 2, "Eta": 1},
               drawers=2)
    # a small zip beside the full one is a subset of it: deduplicated, not double counted
    _write_zip(tmp_path / "images_background_small1.zip", "images_background_small1",
               {"Alpha03": 1}, drawers=2)
    split = omniglot_alphabet_split(omniglot_index(find_omniglot_zips(tmp_path)))
    assert split["val"] == ("Alpha05", "Alpha11")
    assert split["test"] == ("Eta", "Zeta")
    assert len(split["train"]) == 10 and "Alpha03" in split["train"]
    tr = load_split("omniglot", tmp_path, "train", image_size=8)
    assert tr.num_classes == 10 and len(tr) == 20


def test_missing_and_broken_zips_say_which_file_where(tmp_path):
    with pytest.raises(BridgeError, match=r"no Omniglot zip in .*images_background.zip"):
        load_split("omniglot", tmp_path, "train")
    with pytest.raises(BridgeError, match=r"does not exist"):
        load_split("omniglot", tmp_path / "nope", "train")
    (tmp_path / "images_evaluation.zip").write_text("<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(BridgeError, match=r"not a zip file"):
        load_split("omniglot", tmp_path, "test")


def test_load_split_rejects_unknown_names():
    with pytest.raises(BridgeError, match=r"unknown dataset 'imagenet'; choose one of omniglot"):
        load_split("imagenet", ".", "train")
    with pytest.raises(BridgeError, match=r"unknown split 'dev'; choose one of train, val, test"):
        load_split("omniglot", ".", "dev")
    with pytest.raises(BridgeError, match=r"unknown omniglot option\(s\) rotation; accepted: "
                                          r"image_size, rotations, invert"):
        load_split("omniglot", ".", "train", rotation=True)
    with pytest.raises(BridgeError, match=r"unknown tieredimagenet option\(s\) image_size"):
        load_split("tiered", ".", "train", image_size=84)


def test_fewshotsplit_validates_shapes_and_dtypes():
    x = np.zeros((4, 5, 5, 1), np.uint8)
    y = np.array([0, 0, 1, 1], np.int64)
    sp = FewShotSplit(x, y, ("a", "b"), "t/train")
    assert sp.num_classes == 2 and sp.image_shape == (5, 5, 1)
    bad = [((x.astype(np.float32), y, ("a", "b")), "must be uint8"),
           ((x[..., 0], y, ("a", "b")), "4-d array"),
           ((np.zeros((4, 5, 5, 2), np.uint8), y, ("a", "b")), "1 or 3 channels"),
           ((x, y.astype(np.int32), ("a", "b")), "int64"),
           ((x, y[:3], ("a", "b")), "4 images but 3 labels"),
           ((x, y, ("a",)), r"labels must lie in 0..0"),
           ((x, y, ("a", "b", "c")), "must be dense")]
    for args, msg in bad:
        with pytest.raises(BridgeError, match=msg) as err:
            FewShotSplit(*args, name="t/train")
        assert "\n" not in str(err.value)
