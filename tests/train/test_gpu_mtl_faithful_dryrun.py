"""The prepared GPU script (experiments/gpu_mtl_faithful.py) dry-run on CPU at tiny size: both
methods train two epochs, each epoch is timed, and the test accuracy comes back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "gpu_mtl_faithful.py"


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_mtl_faithful", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    assert module.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"mtl", "metaoptnet-ridge"}
    for run in report["runs"].values():
        assert [r["epoch"] for r in run["epochs"]] == [1, 2]
        assert all(r["epoch_train_s"] > 0 and 0 <= r["val_acc"] <= 100 for r in run["epochs"])
        assert 0 <= run["test"]["mean"] <= 100 and run["test"]["episodes"] == 4
        assert (run["meta_batch"], run["images_per_class"]) == (6, 10)   # cifarfs_5shot: the same images per step
    assert "mtl epoch 2" in capsys.readouterr().out
