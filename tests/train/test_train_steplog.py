"""The trainer's per-step log: one row per step, resume-exact, TensorBoard events, curve.png from it."""

import pandas as pd
import pytest

from ntk_bridge.train import steplog
from ntk_bridge.train.steplog import StepLog


def _fill(run, steps, start=0):
    log = StepLog(run).open(start)
    for s in steps:
        log.add(s, loss=1.0 / s, acc=0.5, lr=1e-3, images_seen=10 * s,
                history=[{"step": 2, "val_acc": 60.0}] if s > 2 else [])
    log.close([{"step": 2, "val_acc": 60.0}])
    return steplog.read(run)


def test_one_row_per_step_with_exact_values(tmp_path):
    frame = _fill(tmp_path, range(1, 6))
    assert list(frame.columns) == list(steplog.COLUMNS)
    assert list(frame["step"]) == [1, 2, 3, 4, 5]
    assert frame["loss"].tolist() == [1.0 / s for s in range(1, 6)]       # repr: no digits lost
    assert list(frame["images_seen"]) == [10, 20, 30, 40, 50]


def test_a_resume_drops_the_rows_after_its_checkpoint_and_a_cut_line(tmp_path):
    _fill(tmp_path, range(1, 9))
    with open(tmp_path / steplog.FILE, "a") as fh:
        fh.write("9,0.1")                                                    # a kill mid-write
    frame = _fill(tmp_path, range(5, 8), start=4)                          # resumed from the step-4 checkpoint
    assert list(frame["step"]) == [1, 2, 3, 4, 5, 6, 7]
    assert frame["loss"].tolist() == [1.0 / s for s in range(1, 8)]


def _events(folder):
    """(tag, step, value) of every scalar in the TFRecord event files of ``folder``."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = []
    for f in sorted(folder.glob("events.out.tfevents.*")):
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_tensorboard_events_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    _fill(tmp_path, range(1, 5))
    events = _events(tmp_path / steplog.TB_DIR)
    loss = [(s, v) for tag, s, v in events if tag == "train/loss"]
    assert [s for s, _ in loss] == [1, 2, 3, 4]
    assert [v for _, v in loss] == pytest.approx([1.0, 0.5, 1 / 3, 0.25], rel=1e-6)   # float32 in the events
    assert [(s, v) for tag, s, v in events if tag == "val/acc"] == [(2, 60.0)]       # once, though seen each step


def test_without_tensorboardx_the_csv_is_written_alone(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)                 # import fails as if not installed
    log = StepLog(tmp_path).open(0)
    assert not log.tensorboard
    log.add(1, 0.5, 0.5, 1e-3, 10)
    log.close()
    assert list(steplog.read(tmp_path)["step"]) == [1] and not (tmp_path / steplog.TB_DIR).exists()


def test_curve_png_is_drawn_from_the_step_log(tmp_path):
    frame = _fill(tmp_path, range(1, 21))
    history = [{"step": 10, "val_acc": 55.0, "val_ci95": 3.0, "val_episodes": 4, "val_query": 2, "val_head": "logreg"},
               {"step": 20, "val_acc": 60.0, "val_ci95": 2.5, "val_episodes": 4, "val_query": 2, "val_head": "logreg"}]
    fig = steplog.plot_curve(frame, history, "tiny run")
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == list(range(1, 21))                    # every step is a point, not one per validation
    fig.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 5000


@pytest.mark.slow
def test_a_killed_and_resumed_run_has_the_step_log_of_an_uninterrupted_one(tmp_path):
    from helpers.train_data import synthetic_data, tiny_config  # noqa: E402  (tests/ on sys.path)

    from ntk_bridge.train.loop import train

    data = synthetic_data()
    config = tiny_config(max_steps=7, checkpoint_every=3, eval_every=2)
    train(config, tmp_path / "full", data=data)

    class Killed(Exception):
        pass

    def kill_at_5(step, loop):
        if step == 5:
            raise Killed()

    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", callback=kill_at_5, data=data)
    assert list(steplog.read(tmp_path / "resumed")["step"]) == [1, 2, 3, 4, 5]   # logged up to the kill
    train(config, tmp_path / "resumed", data=data)                             # resumes from step 3
    full, resumed = steplog.read(tmp_path / "full"), steplog.read(tmp_path / "resumed")
    assert list(resumed["step"]) == list(range(1, 8))
    pd.testing.assert_frame_equal(full, resumed)                               # bitwise: the steps are deterministic
