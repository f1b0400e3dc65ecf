"""A whole training run across 2 processes (jax.distributed on the CPU, 1 device each) writes, through
process 0 alone, the run folder that one process with 2 devices writes; interrupted after a
checkpoint and resumed, it still does.

What "the same run folder" means: the same files; config.json, steps.csv and every metric but the
throughput (images_per_s: seconds) byte for byte or value for value; the latest and best checkpoints'
arrays equal. With 2 devices each step's all-reduce adds two partial sums, which is exact in either
order, so the two runs compute the same numbers bit for bit (the per-device programs are the same).
Timing files (timing.csv, summary.json's seconds) differ by nature and are compared by keys only.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers.processes import run_processes

TWO = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
TIMING = {"images_per_s"}


def _files(run) -> set[str]:
    """The run folder's files, less the names that no two runs share: the checkpoint library's data
    files (content-hashed names in ``d/`` folders, as many as its writer threads made) and the
    TensorBoard event file's (a timestamp)."""
    return {"tb/events" if p.parent.name == "tb" else str(p.relative_to(run)) for p in run.rglob("*")
            if p.is_file() and p.parent.name != "d"}


def _arrays(run, sub: str) -> tuple[int, list]:
    """(step, the state's arrays) of the latest checkpoint in ``run/sub`` (checkpoints/ or best/)."""
    import jax
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager((run / sub).resolve())
    step = manager.latest_step()
    out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(out["state"])]


@pytest.mark.slow
def test_two_processes_interrupted_and_resumed_write_the_one_process_run_folder(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_processes("helpers.multihost_train_child", one, n=1, env={**TWO, "PHASE": "whole"})
    for phase in ("interrupted", "resumed"):
        run_processes("helpers.multihost_train_child", two, n=2, env={"PHASE": phase})
        if phase == "interrupted":
            steps = sorted(int(p.name) for p in (two / "run" / "checkpoints").iterdir() if p.name.isdigit())
            assert steps == [2] and not (two / "run" / "summary.json").exists()
    assert not (two / "run-1").exists()                               # process 1 wrote nothing
    a, b = one / "run", two / "run"
    assert _files(a) == _files(b) and not list(tmp_path.rglob(".*.lock"))
    for name in ("config.json", "steps.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert list(ma.columns) == list(mb.columns) and len(ma) == 2
    pd.testing.assert_frame_equal(ma.drop(columns=list(TIMING)), mb.drop(columns=list(TIMING)), check_exact=True)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert sa.keys() == sb.keys() and sb["resumed_from"] == 2 and sa["resumed_from"] == 0
    for key in ("steps", "best_step", "best_val_acc", "test", "stop_reason", "images_seen"):
        assert sa[key] == sb[key], key
    for sub in ("checkpoints", "best"):
        (step_a, xs), (step_b, ys) = _arrays(a, sub), _arrays(b, sub)
        assert step_a == step_b and len(xs) == len(ys) > 0, sub
        for x, y in zip(xs, ys):
            np.testing.assert_array_equal(x, y)
