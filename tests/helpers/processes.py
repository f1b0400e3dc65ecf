"""Run a test helper module as several processes of one jax.distributed run on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on the loopback address (for the JAX coordinator)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_processes(module: str, out: Path, n: int = 2, env: dict | None = None, timeout: int = 1200) -> None:
    """``python -m MODULE OUT`` as ``n`` processes joined by the JAX coordinator variables
    (``JAX_COORDINATOR_ADDRESS`` on a free loopback port, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``),
    on the CPU, from tests/; asserts every process exits 0 (their output in the message)."""
    base = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {}),
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": str(n)}
    procs = [subprocess.Popen([sys.executable, "-m", module, str(out)], cwd=TESTS,
                              env={**base, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(n)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-2000:] for log in logs)
