"""The image-folder data set (root/<class>/*.png): class splits, decoding, validation, training on it."""

import json

import numpy as np
import pandas as pd
import pytest

from ntk_bridge.commands.cli import main
from ntk_bridge.data import dataset_stats, load_split
from ntk_bridge.data.image_folder import seed_split
from ntk_bridge.errors import BridgeError


def write_folder(root, n_classes=12, per_class=6, size=12, mode="L", seed=0):
    """``n_classes`` class folders of ``per_class`` PNGs: a fixed random pattern per class, 5% noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        base = rng.random((size, size) + (() if mode == "L" else (3,))) > 0.6
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = (base ^ (rng.random(base.shape) > 0.95)).astype(np.uint8) * 255
            Image.fromarray(img, mode=None).convert(mode).save(folder / f"img_{i}.png")
    return root


def test_seed_split_is_disjoint_complete_and_deterministic():
    names = [f"c{i:02d}" for i in range(25)]
    a, b = seed_split(names, 3), seed_split(names, 3)
    assert a == b and seed_split(names, 4) != a
    assert sorted(a["train"] + a["val"] + a["test"]) == names
    assert [len(a[s]) for s in ("train", "val", "test")] == [16, 4, 5]       # round(0.64 n), round(0.16 n), rest
    assert [len(v) for v in seed_split(names[:3], 0).values()] == [1, 1, 1]


def test_splits_load_as_few_shot_splits(tmp_path):
    root = write_folder(tmp_path / "grey")
    splits = {s: load_split("imagefolder", root, s) for s in ("train", "val", "test")}
    assert [sp.num_classes for sp in splits.values()] == [8, 2, 2]
    assert set().union(*(set(sp.class_names) for sp in splits.values())) == {f"class_{c:02d}" for c in range(12)}
    train = splits["train"]
    assert train.images.shape == (48, 12, 12, 1) and train.images.dtype == np.uint8
    assert (train.class_counts() == 6).all() and train.name == "imagefolder/train"
    # one class's images are its own folder's, in file order
    from PIL import Image
    first = train.class_names[0]
    np.testing.assert_array_equal(train.images[0, ..., 0], np.asarray(Image.open(root / first / "img_0.png")))
    # RGB folders give 3 channels; image_size resizes; channels=1 converts
    rgb = write_folder(tmp_path / "rgb", mode="RGB", size=10)
    assert load_split("imagefolder", rgb, "test").images.shape[1:] == (10, 10, 3)
    assert load_split("imagefolder", rgb, "test", image_size=16, channels=1).images.shape[1:] == (16, 16, 1)
    # normalisation stats come from the training split
    mean, std = dataset_stats("imagefolder", root)
    x = train.images / 255.0
    assert mean == pytest.approx((x.mean(),)) and std == pytest.approx((x.std(),))


def test_a_split_file_decides_the_classes(tmp_path):
    root = write_folder(tmp_path / "f", n_classes=5)
    spec = {"train": ["class_00", "class_01", "class_02"], "val": ["class_03"], "test": ["class_04"]}
    (root / "splits.json").write_text(json.dumps(spec))
    for s, names in spec.items():
        assert load_split("imagefolder", root, s).class_names == tuple(names)


@pytest.mark.parametrize("spec, fragment", [
    ({"train": ["class_00"], "val": ["class_01"], "test": ["class_09"]}, "names classes with no folder"),
    ({"train": ["class_00"], "val": ["class_00"], "test": ["class_01"]}, "more than one place"),
    ({"train": ["class_00"], "test": ["class_01"]}, "exactly the keys train, val, test"),
    ("not json", "not readable JSON"),
])
def test_a_bad_split_file_is_one_line(tmp_path, spec, fragment):
    root = write_folder(tmp_path / "f", n_classes=3)
    (root / "splits.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    with pytest.raises(BridgeError, match=fragment) as err:
        load_split("imagefolder", root, "train")
    assert "\n" not in str(err.value)


def test_bad_folders_are_one_line_each(tmp_path):
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, {}, "has no class folders"))
    hollow = write_folder(tmp_path / "hollow", n_classes=3)
    (hollow / "class_99").mkdir()
    cases.append((hollow, {}, "holds no images"))
    corrupt = write_folder(tmp_path / "corrupt", n_classes=3)
    for s in ("train", "val", "test"):                       # whichever split it lands in
        (corrupt / f"class_0{['train', 'val', 'test'].index(s)}" / "bad.png").write_bytes(b"<html>quota</html>")
    cases.append((corrupt, {}, "cannot be read"))
    mixed = write_folder(tmp_path / "mixed", n_classes=3, size=12)
    from PIL import Image
    for c in range(3):
        Image.new("L", (20, 20)).save(mixed / f"class_0{c}" / "big.png")
    cases.append((mixed, {}, "different sizes"))
    cases.append((write_folder(tmp_path / "two", n_classes=2), {}, "at least 3 classes"))
    cases.append((tmp_path / "nowhere", {}, "does not exist"))
    cases.append((write_folder(tmp_path / "opt", n_classes=3), {"cache_dir": "x"}, "unknown imagefolder option"))
    for root, options, fragment in cases:
        with pytest.raises(BridgeError, match=fragment) as err:
            load_split("imagefolder", root, "train", **options)
        assert "\n" not in str(err.value), root
    # resizing is the fix the message names
    assert load_split("imagefolder", mixed, "train", image_size=16).images.shape[1:] == (16, 16, 1)


def test_data_info_reads_an_image_folder(tmp_path, capsys):
    root = write_folder(tmp_path / "f")
    assert main(["data", "info", "--dataset", "imagefolder", "--root", str(root),
                 "--out", str(tmp_path / "grid.png")]) == 0
    out = capsys.readouterr().out
    assert "class folders (seed split)" in out and (tmp_path / "grid.png").stat().st_size > 1000


@pytest.mark.slow
def test_training_a_few_steps_on_an_image_folder(tmp_path, capsys):
    """`ntk-bridge train` on a tiny image folder: 6 steps, the per-step log, curve.png, TensorBoard events."""
    root = write_folder(tmp_path / "data", size=16)          # conv4 pools four times: at least 16x16
    run = tmp_path / "run"
    assert main(["train", "--dataset", "imagefolder", "--root", str(root), "--shots", "1", "--steps", "6",
                 "--set", "n_way=2", "--set", "channels=4", "--set", "train_query=2", "--set", "images_per_class=0", "--set", "val_query=2",
                 "--set", "test_query=2", "--set", "val_episodes=3", "--set", "test_episodes=4",
                 "--set", "eval_every=3", "--set", "checkpoint_every=3", "--run-dir", str(run), "--no-progress"]) == 0
    steps = pd.read_csv(run / "steps.csv")
    assert list(steps["step"]) == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(steps["loss"]).all() and (steps["images_seen"].diff().dropna() > 0).all()
    assert len(pd.read_csv(run / "metrics.csv")) == 2                      # validations at steps 3 and 6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["split"] == "imagefolder/test" and 0 <= summary["test"]["mean"] <= 100
    assert (run / "curve.png").stat().st_size > 5000
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert "imagefolder 2-way 1-shot" in capsys.readouterr().out
