"""What the peer benchmarks share: the machine's load as text, and a report that prints and saves.

Imported by ``bench_depth_sweep.py`` and ``bench_logreg.py`` (run as scripts from the repository
root, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

_PEAK = [0.0]


def load() -> str:
    """The load average as text; remembers the highest 1-minute value seen (:func:`peak_load`)."""
    one, five, fifteen = os.getloadavg()
    _PEAK[0] = max(_PEAK[0], one)
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


def peak_load() -> float:
    """The highest 1-minute load average that :func:`load` has seen."""
    return _PEAK[0]


class Report:
    """Prints lines and appends them to ``path`` (if given) as they come, flushed."""

    def __init__(self, path: Path | None):
        self.fh = open(path, "w") if path else None

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        if self.fh:
            self.fh.write(line + "\n")
            self.fh.flush()


def finish(say: Report, out: Path | None, config, rows: list) -> None:
    """The closing lines of a bench: end time and load, a note if the machine was loaded, and
    the rows as JSON next to ``out`` (``config`` and ``rows`` are dataclasses)."""
    import sys
    import time
    from dataclasses import asdict

    say(f"\nend {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {load()}")
    if peak_load() > 2.0:
        say(f"note: the machine was loaded by other jobs (1-minute load average up to {peak_load():.1f} "
            f"on {os.cpu_count()} CPUs): wall times are inflated and noisy; the A-B-A medians and the "
            "CPU-time columns are the better guide to the ratios")
    if out is not None:
        from ntk_bridge.io import json_text  # strict JSON: a NaN timing is written as null
        out.with_suffix(".json").write_text(json_text(
            {"config": asdict(config), "argv": sys.argv[1:], "rows": [asdict(r) for r in rows]}))


def int_tuple(text: str, option: str, example: str) -> tuple[int, ...]:
    """``"100,200"`` as (100, 200); a one-line BridgeError naming ``option`` otherwise."""
    from ntk_bridge.errors import BridgeError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise BridgeError(f"{option} take comma-separated integers, e.g. {example}") from None


def out_path(text: str | None) -> Path | None:
    """The ``--out`` text file (must end in .txt, in an existing folder), or None."""
    from ntk_bridge.errors import require

    out = Path(text) if text else None
    if out is not None:
        require(out.suffix == ".txt", f"--out must end in .txt (got {out})")
        require(out.parent.is_dir(), f"--out folder {out.parent} does not exist; create it first")
    return out


def alternate(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Call every ``fns[name]()`` once apart (``first``: compile / warm-up), then ``rounds`` times
    in alternating order (forward on even rounds, reversed on odd ones), so that load drifts hit
    every method alike. Returns ({name: first-call seconds}, {name: [seconds per round]}); a
    callable's result is blocked on (``block_until_ready`` where it has one)."""
    import time

    def call(fn):
        start = time.perf_counter()
        out = fn()
        ready = getattr(out, "block_until_ready", None)
        if ready is not None:
            ready()
        elif isinstance(out, (tuple, list)):
            for o in out:
                getattr(o, "block_until_ready", lambda: None)()
        return time.perf_counter() - start

    names = list(fns)
    first = {name: call(fns[name]) for name in names}
    times: dict = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(call(fns[name]))
    return first, times


def ratio_stats(peer: list, ours: list) -> tuple[float, float, float]:
    """(median, min, max) over rounds of the per-round ratio peer / ours (> 1: ours faster)."""
    import numpy as np

    r = np.asarray(peer) / np.asarray(ours)
    return float(np.median(r)), float(r.min()), float(r.max())
