"""One process of a whole training run across processes, for tests/train/test_multihost_run.py.

The parent starts these with the JAX coordinator variables (``helpers.processes.run_processes``)
and ``PHASE`` set:

- ``interrupted``: train the tiny config (4 steps, a checkpoint and a validation every 2) and stop after the
  checkpoint of step 2 (the callback raises on every process at that step, as a kill would after it);
- ``resumed``: the same command again, which resumes from process 0's checkpoint and finishes;
- ``whole``: the run in one go (the one-process reference).

Process 0 trains into ``OUT/run``; every other process is given ``OUT/run-<process>``, which must
never be created: only process 0 writes the run folder.

    cd tests && PHASE=whole python -m helpers.multihost_train_child OUT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ntk_bridge.train import parallel

STOP_AT = 2


class Stopped(Exception):
    """The interruption of the ``interrupted`` phase."""


def main(out: Path) -> None:
    parallel.initialize_distributed()
    import jax

    from helpers.train_data import synthetic_data, tiny_config
    from ntk_bridge.train.loop import train

    phase = os.environ["PHASE"]
    pid = jax.process_index()
    run_dir = out / ("run" if pid == 0 else f"run-{pid}")

    def interrupt(step, loop):
        if phase == "interrupted" and step == STOP_AT:
            raise Stopped

    try:
        train(tiny_config(algorithm=os.environ.get("ALGORITHM", "mtl"), max_steps=4, test_episodes=4), run_dir,
              callback=interrupt, data=synthetic_data())
    except Stopped:
        pass


if __name__ == "__main__":
    main(Path(sys.argv[1]))
