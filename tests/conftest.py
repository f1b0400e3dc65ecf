"""Shared test set-up.

- ``tests/`` is on ``sys.path`` so that test-only helpers import as ``helpers.<module>``
  (``helpers/data_files.py``: writers of small files in every on-disk format;
  ``helpers/omniglot_zips.py``: tiny Omniglot zips in the official layout). Test modules never
  import each other.
- The ``slow`` mark (registered in pyproject.toml) flags tests that train networks or run whole
  commands; ``pytest -m "not slow"`` is the quick loop, the full suite is what CI runs.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


# ---------------------------------------------------------------- the suite's own size and time
# The README types no test count or duration (they go stale): the suite prints them at the end,
# with the machine's load, since wall times on a shared machine say little without it.

def pytest_sessionstart(session):
    import time

    session.config._ntk_bridge_start = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import os
    import time

    stats = terminalreporter.stats
    counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped", "deselected")}
    ran = [r for k in ("passed", "failed") for r in stats.get(k, []) if getattr(r, "when", "call") == "call"]
    slow = sum(1 for r in ran if "slow" in getattr(r, "keywords", {}))
    wall = time.time() - getattr(config, "_ntk_bridge_start", time.time())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    minutes, seconds = divmod(round(wall), 60)
    terminalreporter.write_line(
        f"ntk_bridge suite: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped, {counts['deselected']} deselected ({slow} of those run marked slow); "
        f"{minutes} min {seconds} s wall on {os.cpu_count()} CPUs, load average {load:.1f} at the end")
