"""Commands under faults: what the one line says and which files are there afterwards (issue 34)."""

from __future__ import annotations

import signal

import pytest
from helpers.file_tree import tree

from ntk_bridge.commands.cli import main
from ntk_bridge.interrupts import Interrupted


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_feature_map_interrupt_says_finished_units_are_kept_and_a_rerun_resumes(tmp_path, capsys, monkeypatch,
                                                                                 sig, code, name):
    from ntk_bridge.studies import feature_map as fm

    def two_units_then_a_signal(config, cache, progress=True, budget_s=None, options=None):
        from ntk_bridge.grid import GridOptions, run_grid

        def stand_in(task):                 # a unit's files, without training it
            return {"unit.json": b'{"rows": [], "pairs": []}', "preds.npz": b""}

        run_grid(fm.grid_units(config)[:2], stand_in, cache, GridOptions(progress=False), desc="two units")
        raise Interrupted(sig) if sig == signal.SIGTERM else KeyboardInterrupt

    monkeypatch.setattr(fm, "compute", two_units_then_a_signal)
    out = tmp_path / "fm"
    assert main(["feature-map", "--quick", "--out", str(out), "--quiet"]) == code
    err = capsys.readouterr().err
    cache = tmp_path / ".fm.cache"
    from ntk_bridge.grid import read_grid
    from ntk_bridge.studies.feature_map import QUICK
    kept = read_grid(fm.grid_units(QUICK), cache)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"interrupted ({name}): 2 of ") and f"units finished and kept in the cache {cache}" in err
    assert "rerun the same command to resume" in err
    assert len(kept.parts) == 2 and not out.exists()                # the kept units, no result folder
    assert all(p == ".fm.cache" or p.startswith(".fm.cache/") for p in tree(tmp_path))   # nothing else written
