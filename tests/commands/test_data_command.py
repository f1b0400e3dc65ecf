"""`ntk-bridge data info`: table, PNG grid and JSON summary; one-line errors, exit status 2."""

from __future__ import annotations

import json

import pytest
from helpers.data_files import write_mini_cache

from ntk_bridge.commands.cli import main
from ntk_bridge.data import default_omniglot_root

REAL = default_omniglot_root()


def test_info_on_tiny_mini_cache_with_a_missing_split(tmp_path, capsys):
    write_mini_cache(tmp_path, "train", n_classes=5, per_class=3)
    write_mini_cache(tmp_path, "val", n_classes=2, per_class=4, val_name="validation")
    out = tmp_path / "grid.png"
    assert main(["data", "info", "--dataset", "miniimagenet", "--root", str(tmp_path),
                 "--out", str(out), "--per-row", "4"]) == 0
    text = capsys.readouterr().out
    assert "train        5       15      84x84x3           3  mini-imagenet-cache-train.pkl" in text
    assert "mini-imagenet-cache-validation.pkl (cache)" in text
    assert "test" in text and "missing: no mini-ImageNet test files found" in text
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["splits"]["train"]["classes"] == 5
    assert summary["splits"]["val"]["images"] == 8
    assert "error" in summary["splits"]["test"]


def test_info_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["data", "info", "--dataset", "tieredimagenet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no tiered-ImageNet train files found in") and "\n" not in err
    assert main(["data", "info", "--dataset", "imagenet21k", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet21k'" in capsys.readouterr().err


@pytest.mark.skipif(not (REAL / "images_background_small1.zip").is_file(),
                    reason=f"real Omniglot zips not found in {REAL}")
@pytest.mark.slow
def test_info_on_real_omniglot(tmp_path, capsys):
    out = tmp_path / "omni.png"
    assert main(["data", "info", "--dataset", "omniglot", "--root", str(REAL),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train      163     3260      28x28x1          20" in text
    assert "test        62     1240      28x28x1          20" in text
    assert out.is_file()


def test_info_without_out_writes_into_the_temporary_folder_not_the_current_one(tmp_path, capsys, monkeypatch):
    """A command writes into the folder it is run from (often a checkout) only when asked."""
    import tempfile

    from helpers.file_tree import tree

    data, cwd, temp = tmp_path / "data", tmp_path / "checkout", tmp_path / "tmp"
    for p in (data, cwd, temp):
        p.mkdir()
    write_mini_cache(data, "train", n_classes=5, per_class=3)
    (cwd / "README.md").write_text("a checkout\n")
    before = tree(cwd)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["data", "info", "--dataset", "miniimagenet", "--root", str(data), "--splits", "train"]) == 0
    assert tree(cwd) == before
    grid = temp / "ntk_bridge" / "data_miniimagenet.png"
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and grid.with_suffix(".json").is_file()
    assert f"sample grid: {grid}" in capsys.readouterr().out


def test_info_refuses_an_unwritable_figure_suffix_before_reading(tmp_path, capsys):
    assert main(["data", "info", "--dataset", "miniimagenet", "--root", str(tmp_path), "--out",
                 str(tmp_path / "grid.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "unsupported figure format 'xyz'" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
