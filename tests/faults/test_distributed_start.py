"""`train --distributed` never waits forever: a deadline, a progress line naming whom it waits for,
and Ctrl-C / SIGTERM that stop the wait (issue 34).

Each case starts one process of a 2-process run whose other process never comes (a real
``jax.distributed.initialize`` on a free loopback port) and asserts the exit code, the one stderr
line, no traceback, the time from the progress line to the exit, and that nothing was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.file_tree import tree
from helpers.processes import free_port

from ntk_bridge.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 5          # --distributed-timeout of these cases, seconds
SLACK = 10           # the exit may come this much later than the deadline on a loaded 2-core machine


def _start(tmp_path: Path, process_id: int, timeout: float = TIMEOUT) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": str(process_id)}
    cmd = [sys.executable, "-m", "ntk_bridge.commands.cli", "train", "--dataset", "omniglot", "--shots", "1",
           "--distributed", "--distributed-timeout", str(timeout), "--run-dir", str(tmp_path / "run")]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _progress(proc: subprocess.Popen) -> tuple[str, float]:
    """The progress line (stdout) and when it came."""
    line = proc.stdout.readline()
    return line.strip(), time.monotonic()


def _finish(proc: subprocess.Popen, limit: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=limit)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("process_id, whom", [
    (0, "process 1 to connect to this process's coordinator at 127.0.0.1:"),
    (1, "the coordinator at 127.0.0.1:"),
])
def test_a_missing_process_is_one_line_and_exit_2_within_the_deadline(tmp_path, process_id, whom):
    before = tree(tmp_path)
    proc = _start(tmp_path, process_id)
    line, shown = _progress(proc)
    assert line.startswith(f"joining a distributed run as process {process_id} of 2: waiting up to 5 s for {whom}")
    code, err = _finish(proc, TIMEOUT + SLACK + 30)
    waited = time.monotonic() - shown
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: no answer within 5 s from {whom}") and "--distributed-timeout" in err
    assert waited < TIMEOUT + SLACK, f"exit {waited:.1f} s after the progress line"
    assert tree(tmp_path) == before                     # no run folder, nothing else


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_stops_the_wait_at_once(tmp_path, sig, code, name):
    before = tree(tmp_path)
    proc = _start(tmp_path, 0, timeout=120)
    line, _ = _progress(proc)
    assert "waiting up to 120 s" in line
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(sig)
    got, err = _finish(proc, 60)
    assert got == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"interrupted ({name}): the distributed start-up was stopped while waiting for process 1")
    assert time.monotonic() - sent < SLACK
    assert tree(tmp_path) == before


@pytest.mark.parametrize("argv, fragment", [
    (["--distributed-timeout", "5"], "--distributed-timeout applies to --distributed only"),
    (["--distributed", "--distributed-timeout", "0"], "--distributed-timeout must be a positive number of seconds"),
    (["--distributed", "--distributed-timeout", "nan"], "--distributed-timeout must be a positive number of seconds"),
])
def test_bad_timeouts_are_refused_before_joining(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    assert main(["train", "--dataset", "omniglot", "--shots", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []
