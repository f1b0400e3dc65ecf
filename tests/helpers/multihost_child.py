"""One process of a two-process run for tests/train/test_multidevice.py (a multi-host run on one machine).

The parent starts two of these with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` and
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES=2`` / ``JAX_PROCESS_ID`` set; each joins the run
(``parallel.initialize_distributed``, the path of ``train --distributed``), takes one data-parallel
step of MTL and of MAML over the 4 devices of both processes (the task axis split 1 per device)
and saves the new parameters and the loss into ``OUT/<algorithm>_<process>.npz``. No assertions:
the parent compares them with the one-process 4-device step of multidevice_child.

    cd tests && python -m helpers.multihost_child OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ntk_bridge.train import parallel


def main(out: Path) -> None:
    parallel.initialize_distributed()
    import jax

    from helpers.multidevice_child import META_BATCH, leaves, step_on
    from helpers.train_data import synthetic_data, tiny_config
    from ntk_bridge.train.loop import init_state

    data = synthetic_data()
    for name in ("mtl", "maml"):
        config = tiny_config(algorithm=name, meta_batch=META_BATCH)
        algorithm, _, state, prepare = init_state(config, data)
        new, metrics, batch = step_on(parallel.data_parallel(0), algorithm, state, config, data, prepare,
                                      jax.random.PRNGKey(5))
        np.savez(out / f"{name}_{jax.process_index()}.npz",
                 params=np.concatenate([a.ravel() for a in leaves(new.params)]),
                 loss=float(metrics["loss"]), processes=jax.process_count(), devices=len(jax.devices()),
                 local_shards=len(next(iter(batch.values())).addressable_shards))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
