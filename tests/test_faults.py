"""Issue 22: faults a real run meets. Each case: exit code 2 (or the documented interrupt code 130 /
143), exactly one line on stderr, no traceback, and the files afterwards (nothing lost, nothing
half-written, no staging folder or lock left)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal

import numpy as np
import pytest
from helpers.file_tree import tree as _tree

from ntk_bridge.commands.cli import main


def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line(capsys, start: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(start), lines[0]
    return lines[0]


SMALL = ["--depths", "1,4", "--train-tasks", "2", "--test-tasks", "2", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny depth sweep (draws 2) and its figure."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["depth-sweep", *SMALL, "--draws", "2", "--out", str(root / "out"), "--figure", str(root / "fig.png")]) == 0
    return root


@pytest.fixture
def previous(finished, tmp_path):
    """A copy of the finished sweep in this test's folder (the results every case must leave alone)."""
    shutil.copytree(finished / "out", tmp_path / "out")
    shutil.copy(finished / "fig.png", tmp_path / "fig.png")
    return tmp_path


def _depth(tmp, *extra, draws="2"):
    return ["depth-sweep", *SMALL, "--draws", draws, "--out", str(tmp / "out"), "--figure", str(tmp / "fig.png"), *extra]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ----------------------------------------------------------------------------- JSON

def test_every_json_written_is_strict_json(tmp_path):
    from ntk_bridge.io import json_text, write_json

    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32(2.5),
                                            "d": np.int64(3), "e": np.array([1.0, np.nan])})

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    parsed = json.loads(path.read_text(), parse_constant=refuse)      # NaN / Infinity would be refused
    assert parsed == {"a": None, "b": [None, 1.5], "c": 2.5, "d": 3, "e": [1.0, None]}
    assert json_text({"x": 1}) == '{\n  "x": 1\n}'


# ----------------------------------------------------------------------------- full disk

def test_depth_sweep_disk_full_is_one_line_and_keeps_the_previous_results(previous, monkeypatch, capsys):
    before = _tree(previous)
    monkeypatch.setattr(os, "fsync", _full_disk)        # every file write fails as on a full device
    assert _run(_depth(previous, "--overwrite", draws="1")) == 2
    line = _one_line(capsys, "error: no space left on the device while writing ")
    assert f"{previous / 'out' / 'config.json'}" in line and "MB free there" in line and "incomplete" not in line
    assert _tree(previous) == before                    # no staging folder, no lock, the old sweep intact


def test_figure_disk_full_is_one_line_and_keeps_the_previous_results(previous, monkeypatch, capsys):
    import matplotlib.figure

    before = _tree(previous)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _full_disk)
    assert _run(_depth(previous, "--overwrite", draws="1")) == 2
    line = _one_line(capsys, "error: no space left on the device while writing ")
    assert f"{previous / 'fig.png'}" in line and "nothing was replaced" in line
    assert _tree(previous) == before


# ----------------------------------------------------------------------------- who may write

def test_a_concurrent_run_on_the_same_output_is_refused(previous, capsys):
    from ntk_bridge.io import lock_path, output_lock

    before = _tree(previous / "out")
    target = (previous / "out").absolute()
    with output_lock(target, "--out", previous / "out") as lock:
        assert _run(_depth(previous)) == 2
        line = _one_line(capsys, f"error: --out {previous / 'out'} is being written by another run ")
        assert f"(process {os.getpid()}, lock file {lock})" in line and f"delete {lock}" in line
    assert _tree(previous / "out") == before and not lock_path(target).exists()
    lock_path(target).write_text("999999\n")           # a lock file left by a killed run does not block
    assert _run(_depth(previous)) == 0 and not lock_path(target).exists()


def test_other_settings_replace_a_finished_result_set_only_with_overwrite(previous, capsys):
    before = _tree(previous)
    assert _run(_depth(previous, draws="1")) == 2
    line = _one_line(capsys, f"error: --out {previous / 'out'} holds results made with different settings ")
    assert "draws: 2 there vs 1 now" in line and "add --overwrite" in line
    assert _tree(previous) == before
    assert _run(_depth(previous)) == 0                 # the same settings reproduce it
    assert _run(_depth(previous, "--overwrite", draws="1")) == 0
    assert json.loads((previous / "out" / "config.json").read_text())["draws"] == 1


def test_every_command_states_its_default_output():
    from ntk_bridge.commands.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name, p in sub.items():
        for action in p._actions:
            if action.dest in ("out", "figure", "run_dir") and action.option_strings:
                assert "default" in action.help, (name, action.dest, action.help)


# ----------------------------------------------------------------------------- damaged inputs

def test_report_refuses_text_in_a_numeric_column(previous, capsys):
    f = previous / "out" / "depth_sweep.csv"
    lines = f.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = lines[2].rstrip("\n").split(",")
    cells[header.index("d_rel")] = "oops"
    lines[2] = ",".join(cells) + "\n"
    f.write_text("".join(lines))
    no = str(previous / "none")
    argv = ["report", "--depth-sweep", str(previous / "out"), "--width-sweep", no, "--kernel-fewshot", no,
            "--compare", no, "--runs", no, "--out", str(previous / "r.md"), "--figures", str(previous / "figs")]
    assert _run(argv) == 2
    line = _one_line(capsys, f"error: {f}: column 'd_rel' holds 'oops' on line 3 where a number is expected")
    assert "re-run `ntk-bridge depth-sweep" in line
    assert not (previous / "r.md").exists() and not (previous / "figs").exists()


def _flip_member(zpath, index: int = 3) -> str:
    """Flip one byte inside the data of the ``index``-th PNG member; its CRC-32 no longer matches."""
    import zipfile

    with zipfile.ZipFile(zpath) as zf:
        info = [i for i in zf.infolist() if i.filename.endswith(".png")][index]
    data = bytearray(zpath.read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 40] ^= 0xFF
    zpath.write_bytes(bytes(data))
    return info.filename


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    from helpers.omniglot_zips import write_tiny_omniglot

    return write_tiny_omniglot(tmp_path_factory.mktemp("omniglot") / "omniglot")


TRAIN = ["train", "--dataset", "omniglot", "--shots", "1", "--no-progress", "--set", "channels=4", "--set", "n_way=3",
         "--set", "train_query=2", "--set", "meta_batch=2", "--set", "eval_every=2", "--set", "checkpoint_every=2",
         "--set", "val_episodes=4", "--set", "val_query=2", "--set", "test_episodes=4", "--set", "test_query=2"]


def _train(root, run_dir, steps=4, *extra):
    return [*TRAIN, "--root", str(root), "--steps", str(steps), "--run-dir", str(run_dir), *extra]


def test_a_damaged_zip_member_is_named_in_one_line(omniglot, tmp_path, capsys):
    root = tmp_path / "omniglot"
    shutil.copytree(omniglot, root)
    member = _flip_member(root / "images_background_small1.zip")
    assert _run(["data", "info", "--dataset", "omniglot", "--root", str(root), "--out", str(tmp_path / "g.png")]) == 2
    line = _one_line(capsys, f"error: {root / 'images_background_small1.zip'} is damaged: its member {member} "
                             "fails its CRC-32 check; download the zip again")
    assert _run(_train(root, tmp_path / "run")) == 2
    assert _one_line(capsys, "error: ") == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["omniglot"]


def test_lr_infinity_is_refused_before_anything(tmp_path, capsys):
    assert _run([*TRAIN, "--set", "lr=Infinity", "--run-dir", str(tmp_path / "run")]) == 2
    _one_line(capsys, "error: config field 'lr' is inf, not a finite number")
    assert _run([*TRAIN, "--algorithm", "maml", "--set", "inner_lr=NaN", "--run-dir", str(tmp_path / "run")]) == 2
    assert "finite" in _one_line(capsys, "error: ")
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_train_on_the_same_run_folder_is_refused(omniglot, tmp_path, capsys):
    from ntk_bridge.io import output_lock

    run = tmp_path / "run"
    with output_lock(run.absolute(), "--run-dir", run) as lock:
        assert _run(_train(omniglot, run)) == 2
        line = _one_line(capsys, f"error: --run-dir {run} is being written by another run (process {os.getpid()}")
        assert f"delete {lock}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- training faults (slow: they train)

def _checkpoints(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _nan_from_step(monkeypatch, first_bad: int, what: str):
    """Make the training step's loss (or its parameters: a non-finite gradient) NaN from step ``first_bad`` on."""
    import jax
    import jax.numpy as jnp

    from ntk_bridge.train import algorithms

    make = algorithms.get_algorithm

    def patched(name):
        algo = make(name)
        step = algo.train_step

        def bad_step(state, batch, key):
            new, metrics = step(state, batch, key)
            bad = state.step >= first_bad - 1
            if what == "loss":
                return new, {**metrics, "loss": jnp.where(bad, jnp.nan, metrics["loss"])}
            params = jax.tree_util.tree_map(lambda p: jnp.where(bad, jnp.nan, p), new.params)
            return new.replace(params=params), metrics

        algo.train_step = bad_step
        return algo

    monkeypatch.setattr(algorithms, "get_algorithm", patched)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_training_stops_at_its_step_and_keeps_the_last_good_checkpoint(omniglot, tmp_path, monkeypatch,
                                                                                 capsys, what):
    from ntk_bridge.train.checkpoints import damage, managers

    run = tmp_path / "run"
    _nan_from_step(monkeypatch, 3, what)
    assert _run(_train(omniglot, run, 6)) == 2
    line = _one_line(capsys, "error: " + ("training loss became nan at step 3" if what == "loss" else
                                          "a gradient was not finite (the parameters became NaN or infinite) at step 3"))
    assert f"the last good checkpoint (step 2) is kept in {run / 'checkpoints'}" in line
    assert _checkpoints(run) == [2] and not (run / "summary.json").exists()
    latest, _ = managers(run)
    assert damage(latest, 2) == ""


def _signal_at_step(monkeypatch, step_no: int, signum: int):
    from ntk_bridge.train import loop

    check = loop._check_finite

    def check_and_signal(config, loss, lr, step, *args, **kwargs):
        if step == step_no:
            os.kill(os.getpid(), signum)                 # as Ctrl-C / `kill` would, in the middle of a step
        return check(config, loss, lr, step, *args, **kwargs)

    monkeypatch.setattr(loop, "_check_finite", check_and_signal)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_train_saves_a_checkpoint_on_ctrl_c_and_sigterm_and_resumes(omniglot, tmp_path, monkeypatch, capsys,
                                                                    signum, code):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _signal_at_step(m, 3, signum)
        assert _run(_train(omniglot, run, 8)) == code
    name = signal.Signals(signum).name
    line = _one_line(capsys, f"interrupted ({name}): checkpoint of step 3 saved in {run / 'checkpoints'}")
    assert line.endswith("rerun the same command to resume")
    assert _checkpoints(run) == [2, 3] and not (run / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handlers restored
    assert _run(_train(omniglot, run, 8)) == 0
    assert "resumed from step 3" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == 3


@pytest.mark.slow
def test_checkpoints_are_also_made_by_wall_time(tmp_path):
    from helpers.train_data import synthetic_data, tiny_config

    from ntk_bridge.train.loop import train

    run = tmp_path / "run"
    train(tiny_config(max_steps=4, checkpoint_every=100, eval_every=100, checkpoint_minutes=1e-9), run,
          data=synthetic_data(), evaluate_test=False)
    assert _checkpoints(run) == [3, 4]                  # every step (2 kept), though checkpoint_every is 100
    assert tiny_config().checkpoint_minutes == 5.0      # the default: at least every 5 minutes of wall time


def _orbax_disk_full(monkeypatch):
    """orbax's save fails as it does on a full disk (measured on a 40 kB tmpfs): its temp folder
    half-written, then tensorstore's ValueError carrying the OS error code."""
    import orbax.checkpoint as ocp

    def save(self, step, *args, **kwargs):
        tmp = self.directory / f"{step}.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
        tmp.mkdir(parents=True)
        (tmp / "_METADATA").write_text("{}")
        raise ValueError(f'RESOURCE_EXHAUSTED: Failed writing: "{tmp}/d/7d35": Failed to write 2788 bytes '
                         "to file 6: No space left on device [os_error_code='28']")

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)


@pytest.mark.slow
def test_train_disk_full_is_one_line_and_leaves_no_folder_or_the_earlier_checkpoints(omniglot, tmp_path, monkeypatch,
                                                                                    capsys):
    fresh = tmp_path / "fresh"
    with monkeypatch.context() as m:
        _orbax_disk_full(m)
        assert _run(_train(omniglot, fresh, 4)) == 2
    line = _one_line(capsys, "error: no space left on the device while writing the checkpoint ")
    assert "MB needed" in line and "MB free there" in line
    assert not fresh.exists()                           # a fresh run that could not save leaves no folder
    run = tmp_path / "run"
    assert _run(_train(omniglot, run, 2)) == 0
    before = _tree(run)
    with monkeypatch.context() as m:
        _orbax_disk_full(m)
        assert _run(_train(omniglot, run, 4)) == 2
    _one_line(capsys, "error: no space left on the device while writing the checkpoint ")
    after = _tree(run)
    assert not [p for p in after if "orbax-checkpoint-tmp" in p]
    assert {p: v for p, v in after.items() if p.startswith(("checkpoints", "best"))} == \
        {p: v for p, v in before.items() if p.startswith(("checkpoints", "best"))}


def _flip_largest(folder):
    f = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_checkpoint_is_named_with_what_to_do(omniglot, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(_train(omniglot, run, 4)) == 0
    capsys.readouterr()
    _flip_largest(run / "checkpoints" / "4")
    before = _tree(run)
    assert _run(_train(omniglot, run, 6)) == 2
    line = _one_line(capsys, f"error: cannot resume {run}: the latest checkpoint {run / 'checkpoints' / '4'} is damaged")
    assert f"the previous checkpoint (step 2) is intact: delete {run / 'checkpoints' / '4'} to resume" in line
    assert _tree(run) == before
    (best,) = (run / "best").iterdir()
    _flip_largest(best)
    assert _run(["evaluate", str(run), "--episodes", "4"]) == 2
    line = _one_line(capsys, f"error: the best checkpoint {best} is damaged")
    assert f"ntk-bridge evaluate {run} --checkpoint latest" in line
    shutil.rmtree(run / "checkpoints" / "4")           # the fix the message offers: resume from step 2
    assert _run(_train(omniglot, run, 6)) == 0
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == 2


@pytest.fixture
def tiny_disk(tmp_path):
    """A 40 kB tmpfs (a real full disk for orbax's C++ writers); skipped where mounting is not allowed."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_train_on_a_really_full_disk_is_one_line_and_leaves_no_folder(omniglot, tiny_disk, capsys):
    run = tiny_disk / "run"
    assert _run(_train(omniglot, run, 4)) == 2
    line = _one_line(capsys, "error: no space left on the device while writing the checkpoint ")
    assert "MB free there" in line
    assert list(tiny_disk.iterdir()) == []
