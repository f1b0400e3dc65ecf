"""The study protocol (ntk_bridge.studies.protocol): every registered study goes config -> run ->
frame -> summarise -> verdicts -> plot, and the protocol's result equals the study module's own
functions called one by one (the protocol adds no computation of its own)."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from ntk_bridge.closed_form.tasks import FamilyConfig
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.studies import depth_sweep, regime_map
from ntk_bridge.studies.protocol import STUDIES, Result, run_study

TINY_FAMILY = FamilyConfig(n_train_tasks=3, n_test_tasks=2, n_query=3, n_support=3, d=6)


def test_registered_studies_are_named_by_their_command():
    from ntk_bridge.commands.cli import COMMANDS

    assert set(STUDIES) <= set(COMMANDS)
    for name, study in STUDIES.items():
        assert study.name == name
        for step in ("run", "summarise", "verdicts", "plot"):
            assert callable(getattr(study, step))


def test_depth_sweep_through_the_protocol_equals_the_module():
    config = depth_sweep.DepthStudyConfig(depths=(1, 4, 16), draws=2, net=NetSpec(depth=16), family=TINY_FAMILY)
    result = run_study(STUDIES["depth-sweep"], config)
    frame = depth_sweep.run(config, progress=False)
    pd.testing.assert_frame_equal(result.frame, frame)
    pd.testing.assert_frame_equal(result.summary, depth_sweep.summarize(frame))
    assert result.verdicts.empty
    assert isinstance(STUDIES["depth-sweep"].plot(config, result, "tiny"), Figure)


def test_regime_map_through_the_protocol_judges_every_cell_and_pair():
    config = regime_map.RegimeMapConfig(nets=("relu-b0",), inners=("fixed",), outer_times=(float("inf"),),
                                        depths=(1, 4, 16, 64), deep_from=4, draws=2, family=TINY_FAMILY)
    result = run_study(STUDIES["regime-map"], config)
    assert isinstance(result, Result)
    assert set(result.frame["cell"]) == {c.key for c in config.cells()}
    pd.testing.assert_frame_equal(result.summary, regime_map.summarize_cells(result.frame, config.deep_from))
    claims = result.summary[result.summary["pair"].isin(regime_map.CLAIM_PAIRS)]
    assert len(result.verdicts) == len(claims) > 0
    assert isinstance(STUDIES["regime-map"].plot(config, result, "tiny"), Figure)


@pytest.mark.slow
def test_width_sweep_through_the_protocol_fits_a_slope_per_method():
    from ntk_bridge.finite.sweep import WidthSweepConfig

    config = WidthSweepConfig(widths=(16, 32), seeds=1, methods=("mtl-b", "anil"), family=TINY_FAMILY)
    result = run_study(STUDIES["width-sweep"], config)
    assert set(result.frame["method"]) == {"mtl-b", "anil"}
    assert set(result.summary["quantity"]) == {"mtl-b", "anil"}
    assert (result.summary["widest"] == 32).all()
