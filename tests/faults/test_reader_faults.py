"""Damaged and hostile inputs to the readers, through the commands (issue 34): each case asserts the
exit code, one `error:` line with its words, no traceback, and the files afterwards (none written,
the inputs untouched). Classes: image-folder images, the image-folder split file, Omniglot zips."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.file_tree import tree
from helpers.image_folder import write_image_folder
from helpers.omniglot_zips import write_tiny_omniglot

from ntk_bridge.commands.cli import main


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, bad_crc: bool = False) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels (IHDR only; no pixel data)."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if bad_crc:
        ihdr = ihdr[:-1] + bytes([ihdr[-1] ^ 0xFF])
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IEND", b"")


def a_png(size: int = 32) -> bytes:
    """A noisy grey PNG (its pixel data does not compress: truncating it cuts the pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


HOSTILE_IMAGES = {
    "empty": (b"", ["cannot be read", "UnidentifiedImageError"]),
    "text": (b"not an image at all\n", ["cannot be read", "UnidentifiedImageError"]),
    "html": (b"<!DOCTYPE html><html><body>Sign in</body></html>", ["cannot be read"]),
    "truncated": (a_png()[: len(a_png()) // 2], ["cannot be read", "truncated"]),
    "bad-crc": (png_header(16, 16, bad_crc=True), ["cannot be read"]),
    "header-only": (png_header(16, 16), ["cannot be read"]),
    "bomb": (png_header(40_000, 40_000), ["too large to decode", "smaller image"]),
    "zero-size": (png_header(0, 0), ["cannot be read"]),
}


def _one_error_line(capsys, code: int, expected_code: int = 2) -> str:
    captured = capsys.readouterr()
    assert code == expected_code, captured
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    return captured.err


@pytest.mark.parametrize("name", list(HOSTILE_IMAGES))
def test_a_hostile_image_in_an_image_folder(tmp_path, capsys, name):
    data, words = HOSTILE_IMAGES[name]
    root = write_image_folder(tmp_path / "data", n_classes=4, per_class=3)
    bad = root / "class_00" / "img_1.png"
    bad.write_bytes(data)
    before = tree(tmp_path)
    code = main(["data", "info", "--dataset", "imagefolder", "--root", str(root), "--splits", "train,val,test",
                 "--out", str(tmp_path / "grid.png")])
    line = _one_error_line(capsys, code)
    assert str(bad) in line, line
    for word in words:
        assert word in line, line
    assert tree(tmp_path) == before                          # no grid, no summary, inputs untouched


SPLIT_FILES = {
    "not-json": (b"{train: [", ["is not readable JSON"]),
    "not-utf8": (b"\xff\xfe\x00garbage", ["is not readable JSON"]),
    "a-list": (b'["class_00"]', ["must be a JSON object"]),
    "missing-key": (b'{"train": ["class_00"], "val": ["class_01"]}', ["exactly the keys train, val, test"]),
    "numbers": (b'{"train": [1], "val": ["class_01"], "test": ["class_02"]}', ["lists of class names"]),
    "twice": (b'{"train": ["class_00"], "val": ["class_00"], "test": ["class_02"]}', ["more than one place"]),
    "unknown": (b'{"train": ["nope"], "val": ["class_01"], "test": ["class_02"]}', ["no folder under the root: nope"]),
    "deep": (b"[" * 100_000 + b"]" * 100_000, ["is not readable JSON"]),
}


@pytest.mark.parametrize("name", list(SPLIT_FILES))
def test_a_damaged_split_file(tmp_path, capsys, name):
    data, words = SPLIT_FILES[name]
    root = write_image_folder(tmp_path / "data", n_classes=4, per_class=3)
    (root / "splits.json").write_bytes(data)
    before = tree(tmp_path)
    code = main(["data", "info", "--dataset", "imagefolder", "--root", str(root), "--out", str(tmp_path / "g.png")])
    line = _one_error_line(capsys, code)
    assert "splits.json" in line and all(w in line for w in words), line
    assert tree(tmp_path) == before


def _rewrite_member(zpath: Path, member_index: int, data: bytes) -> str:
    """Replace one PNG member of ``zpath`` with ``data`` (the zip itself stays valid); its name."""
    with zipfile.ZipFile(zpath) as zf:
        items = [(i, zf.read(i)) for i in zf.infolist()]
    pngs = [k for k, (i, _) in enumerate(items) if i.filename.endswith(".png")]
    k = pngs[member_index]
    items[k] = (items[k][0], data)
    with zipfile.ZipFile(zpath, "w") as zf:
        for info, content in items:
            zf.writestr(info, content)
    return items[k][0].filename


@pytest.mark.parametrize("name", ["empty", "text", "truncated", "bad-crc", "bomb"])
def test_a_hostile_image_inside_an_omniglot_zip(tmp_path, capsys, name):
    data, words = HOSTILE_IMAGES[name]
    root = write_tiny_omniglot(tmp_path / "omniglot", chars=2, drawers=3)
    zpath = root / "images_background_small1.zip"
    member = _rewrite_member(zpath, 0, data)
    before = tree(tmp_path)
    code = main(["data", "info", "--dataset", "omniglot", "--root", str(root), "--splits", "train",
                 "--out", str(tmp_path / "grid.png")])
    line = _one_error_line(capsys, code)
    assert member in line and str(zpath) in line and all(w in line for w in words), line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) // 2], ["images_background_small1.zip"]),
    (lambda b: b"", ["images_background_small1.zip"]),
    (lambda b: b"<html>quota exceeded</html>", ["images_background_small1.zip"]),
])
def test_a_damaged_omniglot_zip(tmp_path, capsys, damage, words):
    root = write_tiny_omniglot(tmp_path / "omniglot", chars=2, drawers=3)
    zpath = root / "images_background_small1.zip"
    zpath.write_bytes(damage(zpath.read_bytes()))
    before = tree(tmp_path)
    code = main(["data", "info", "--dataset", "omniglot", "--root", str(root), "--splits", "train",
                 "--out", str(tmp_path / "grid.png")])
    line = _one_error_line(capsys, code)
    assert all(w in line for w in words), line
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- damaged run folders for `evaluate`

def _run_folder(tmp_path: Path) -> Path:
    """A run folder as `train` leaves it, minus checkpoints: a valid config.json (tiny image folder)."""
    import json

    from ntk_bridge.train.config import load_config

    root = write_image_folder(tmp_path / "data", n_classes=12, per_class=6)
    config = load_config("imagefolder_1shot").replace(root=str(root), n_way=2, channels=4)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    return run


RUN_DAMAGE = {
    "no-folder": (lambda run: __import__("shutil").rmtree(run), ["is not a run folder (no config.json)"]),
    "no-config": (lambda run: (run / "config.json").unlink(), ["is not a run folder (no config.json)"]),
    "config-garbage": (lambda run: (run / "config.json").write_text("{not json"), ["config.json is not valid JSON"]),
    "config-empty": (lambda run: (run / "config.json").write_text(""), ["config.json is not valid JSON"]),
    "config-binary": (lambda run: (run / "config.json").write_bytes(b"\xff\xfe\x00\x81"), ["cannot be read as a text file"]),
    "config-deep": (lambda run: (run / "config.json").write_text("[" * 100_000 + "]" * 100_000),
                    ["config.json is not valid JSON", "nested too deeply"]),
    "config-list": (lambda run: (run / "config.json").write_text("[1, 2]"), ["a config must be a JSON object, got list"]),
    "config-null": (lambda run: (run / "config.json").write_text("null"), ["a config must be a JSON object, got NoneType"]),
    "config-unknown-field": (lambda run: _edit(run, zap=1), ["unknown config field(s) zap"]),
    "config-bad-value": (lambda run: _edit(run, n_way=-3), ["n_way"]),
    "config-nan-lr": (lambda run: _edit(run, lr=float("nan")), ["lr"]),
    "config-a-folder": (lambda run: ((run / "config.json").unlink(), (run / "config.json").mkdir()), ["config.json"]),
    "no-checkpoints": (lambda run: None, ["checkpoint"]),
    "checkpoints-a-file": (lambda run: (run / "checkpoints").write_text("x"), ["checkpoint"]),
}


def _edit(run: Path, **changes) -> None:
    import json

    values = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**values, **changes}))


@pytest.mark.parametrize("name", list(RUN_DAMAGE))
def test_evaluate_on_a_damaged_run_folder(tmp_path, capsys, name):
    damage, words = RUN_DAMAGE[name]
    run = _run_folder(tmp_path)
    damage(run)
    before = tree(tmp_path)
    code = main(["evaluate", str(run), "--episodes", "2"])
    line = _one_error_line(capsys, code)
    assert all(w in line for w in words), line
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- damaged JSON for the other readers

DAMAGED_JSON = {
    "garbage": (b"{not json", ["is not valid JSON"]),
    "binary": (b"\xff\xfe\x00\x81", ["cannot be read"]),
    "deep": (b"[" * 100_000 + b"]" * 100_000, ["not valid JSON", "nested too deeply"]),
}


@pytest.mark.parametrize("name", list(DAMAGED_JSON))
def test_train_config_file(tmp_path, capsys, name):
    data, words = DAMAGED_JSON[name]
    config = tmp_path / "my.json"
    config.write_bytes(data)
    before = tree(tmp_path)
    code = main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run")])
    line = _one_error_line(capsys, code)
    assert str(config) in line and all(w in line for w in words), line
    assert tree(tmp_path) == before


def _depth_sweep_results(folder: Path) -> Path:
    """A copy of the committed depth-sweep result folder (what `report` reads)."""
    import shutil

    src = Path(__file__).resolve().parents[2] / "experiments" / "results" / "depth_sweep"
    shutil.copytree(src, folder)
    return folder


@pytest.mark.parametrize("name", list(DAMAGED_JSON))
def test_report_on_a_damaged_result_config(tmp_path, capsys, name):
    data, words = DAMAGED_JSON[name]
    results = _depth_sweep_results(tmp_path / "depth_sweep")
    (results / "config.json").write_bytes(data)
    before = tree(tmp_path)
    empty = str(tmp_path / "none")
    code = main(["report", "--depth-sweep", str(results), "--width-sweep", empty, "--kernel-fewshot", empty,
                 "--regime-map", empty, "--runs", empty, "--out", str(tmp_path / "report.md"),
                 "--figures", str(tmp_path / "figs")])
    line = _one_error_line(capsys, code)
    assert "config.json" in line and all(w in line for w in words), line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", list(DAMAGED_JSON))
def test_depth_sweep_over_a_result_folder_whose_config_is_damaged(tmp_path, capsys, name):
    """The settings check cannot read the old config.json: refused before any work, nothing replaced."""
    data, _ = DAMAGED_JSON[name]
    results = _depth_sweep_results(tmp_path / "out")
    (results / "config.json").write_bytes(data)
    before = tree(tmp_path)
    code = main(["depth-sweep", "--depths", "1,2", "--draws", "1", "--out", str(results),
                 "--figure", str(tmp_path / "fig.png"), "--quiet"])
    line = _one_error_line(capsys, code)
    assert "config.json cannot be read" in line and "--overwrite" in line, line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("which", ["run.json", "config.json"])
@pytest.mark.parametrize("name", list(DAMAGED_JSON))
def test_width_sweep_from_rows_on_damaged_json(tmp_path, capsys, name, which):
    data, words = DAMAGED_JSON[name]
    out = tmp_path / "ws"
    out.mkdir()
    for f in ("config.json", "run.json"):
        (out / f).write_text("{}")
    (out / "errors.csv").write_text("method,width,seed\n")
    (out / "pairs.csv").write_text("width,seed,pair\n")
    (out / which).write_bytes(data)
    before = tree(tmp_path)
    code = main(["width-sweep", "--from-rows", "--out", str(out), "--figure", str(tmp_path / "f.png")])
    line = _one_error_line(capsys, code)
    if which == "run.json":
        assert which in line and all(w in line for w in words), line
    assert tree(tmp_path) == before
