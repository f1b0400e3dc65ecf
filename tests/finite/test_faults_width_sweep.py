"""Issue 22: `width-sweep` stopped by Ctrl-C at random points resumes to the files of an
uninterrupted run, and every stop leaves the previous result set byte for byte as it was."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from ntk_bridge.commands.cli import main

TINY = ["width-sweep", "--widths", "8,16", "--seeds", "2", "--methods", "mtl-b,anil,maml", "--d", "8",
        "--train-tasks", "2", "--test-tasks", "1", "--n-query", "2", "--n-support", "2", "--inner-steps", "2",
        "--outer-time", "2", "--quiet"]
UNITS = 2 * 2 * 3           # widths x seeds x methods
TIMING = {"errors.csv": ["seconds"], "run.json": ["seconds"]}   # wall seconds differ between any two runs


def _argv(tmp, name):
    return TINY + ["--out", str(tmp / name), "--figure", str(tmp / f"{name}.png")]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _same_results(a, b):
    """Every file equal, the timing columns/fields aside (compared as data, not bytes, for those)."""
    import json

    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "errors.csv":
            x, y = (pd.read_csv(f / name).drop(columns=TIMING[name]) for f in (a, b))
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        elif name == "run.json":
            x, y = ({k: v for k, v in json.loads((f / name).read_text()).items() if k not in TIMING[name]} for f in (a, b))
            assert x == y
        else:
            assert fa[name] == fb[name], name


def _units(resume):
    return len(list(resume.glob("*/w*-s*-*.npz"))) if resume.is_dir() else 0


CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from ntk_bridge.commands.cli import main; sys.exit(main())")       # as the ntk-bridge script calls it


def _interrupt_at(argv, resume, after_units, extra_s):
    """Run the sweep in a child with the default SIGINT handler (a child of a non-interactive shell
    may inherit SIGINT ignored); once ``after_units`` units are kept, wait ``extra_s`` and send SIGINT."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 600
    while _units(resume) < after_units and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(extra_s)
    sent = time.time()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=300)
    return child.returncode, out, err, time.time() - sent


@pytest.mark.slow
def test_width_sweep_interrupted_twice_resumes_to_the_uninterrupted_files(tmp_path):
    assert main(_argv(tmp_path, "straight")) == 0                   # the uninterrupted run
    import shutil

    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")    # a previous finished result set
    shutil.copy(tmp_path / "straight.png", tmp_path / "resumed.png")
    before = {**_files(tmp_path / "resumed"), "png": (tmp_path / "resumed.png").read_bytes()}
    resume = tmp_path / ".resumed.resume"
    rng = np.random.default_rng(22)
    stops = sorted(rng.choice(np.arange(1, UNITS - 1), size=2, replace=False))
    interrupted = 0
    for after in stops:
        rc, out, err, stop_s = _interrupt_at(_argv(tmp_path, "resumed"), resume, int(after), rng.uniform(0, 0.5))
        if rc == 0:                  # the sweep finished before the signal came: nothing to resume
            continue
        lines = err.strip().splitlines()
        assert rc == 130 and len(lines) == 1 and lines[0].startswith("interrupted (SIGINT): "), (rc, err)
        assert "rerun the same command to resume" in lines[0] and "Traceback" not in err
        assert stop_s < 60, f"took {stop_s:.1f} s to stop"
        assert {**_files(tmp_path / "resumed"), "png": (tmp_path / "resumed.png").read_bytes()} == before
        assert _units(resume) >= after
        interrupted += 1
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == [".resumed.resume", "resumed", "resumed.png", "straight", "straight.png"], left
    assert interrupted >= 1
    assert main(_argv(tmp_path, "resumed")) == 0
    _same_results(tmp_path / "straight", tmp_path / "resumed")
    assert (tmp_path / "straight.png").read_bytes() == (tmp_path / "resumed.png").read_bytes()
    assert not resume.exists()                                       # the kept units go once the sweep is done
