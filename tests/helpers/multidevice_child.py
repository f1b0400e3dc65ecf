"""Child process of tests/train/test_multidevice.py: runs with several virtual CPU devices.

The parent sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before this process
imports JAX. For each algorithm it takes one training step three ways from the same state,
batch and key -- ``jax.jit(train_step)`` as before data parallelism, the data-parallel step on
1 device, and on all N devices -- and saves the new parameters, the metrics and how the
N-device batch was split into ``OUT/steps.npz`` and ``OUT/info.json``; then the FC kernels
(numpy engine and the JAX empirical NTK) into ``OUT/kernels.npz``, and the outcome of a whole
``train()`` on N devices and of a meta_batch that N does not divide. No assertions here: the
parent checks everything.

    cd tests && python -m helpers.multidevice_child OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from helpers.train_data import synthetic_data, tiny_config
from ntk_bridge.errors import BridgeError
from ntk_bridge.train import parallel
from ntk_bridge.train.loop import batch_indices, build_batch, init_state, train

ALGORITHMS = ("mtl", "anil", "maml")
META_BATCH = 4


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(jax.device_get(tree))]


def step_on(dp, algorithm, state, config, data, prepare, key):
    """One data-parallel step on ``dp``: (new params, metrics, batch)."""
    k_batch, k_step = parallel.replicate(dp, tuple(jax.random.split(key)))
    idx = batch_indices(config, data.train.labels, 1, algorithm.episodic)
    batch = parallel.shard_batch(dp, build_batch(config, data.train, idx, k_batch, prepare,
                                                 algorithm.episodic, lambda a: parallel.place(dp, a)))
    start = parallel.replicate(dp, jax.tree_util.tree_map(np.asarray, jax.device_get(state)))
    step = parallel.compile_step(dp, algorithm.train_step, start, batch, k_step)
    new, metrics = step(start, batch, k_step)
    return new, metrics, batch


def plain_step(algorithm, state, config, data, prepare, key):
    """The step as the loop took it before data parallelism: jax.jit on the default device."""
    k_batch, k_step = jax.random.split(key)
    idx = batch_indices(config, data.train.labels, 1, algorithm.episodic)
    batch = build_batch(config, data.train, idx, k_batch, prepare, algorithm.episodic)
    new, metrics = jax.jit(algorithm.train_step)(state, batch, k_step)
    return new, metrics


def steps(out: Path, n: int) -> dict:
    data, key = synthetic_data(), jax.random.PRNGKey(5)
    arrays, info = {}, {}
    for name in ALGORITHMS:
        config = tiny_config(algorithm=name, meta_batch=META_BATCH)
        algorithm, _, state, prepare = init_state(config, data)
        arrays[f"{name}/init"] = np.concatenate([a.ravel() for a in leaves(state.params)])
        new_p, met_p = plain_step(algorithm, state, config, data, prepare, key)
        runs = {"plain": (new_p, met_p, None)}
        for label, devices in (("one", 1), ("all", n)):
            runs[label] = step_on(parallel.data_parallel(devices), algorithm, state, config, data, prepare, key)
        for label, (new, metrics, _) in runs.items():
            arrays[f"{name}/{label}/params"] = np.concatenate([a.ravel() for a in leaves(new.params)])
            arrays[f"{name}/{label}/metrics"] = np.array([float(metrics["loss"]), float(metrics["acc"])])
        batch_one, batch_all = runs["one"][2], runs["all"][2]
        info[name] = {
            "batch": {k: {"spec": str(v.sharding.spec), "devices": sorted(d.id for d in v.sharding.device_set),
                          "shard_shapes": [list(s.data.shape) for s in v.addressable_shards],
                          "shard_devices": [s.device.id for s in v.addressable_shards],
                          "shape": list(v.shape), "max_abs": float(np.max(np.abs(np.asarray(v, np.float64)))),
                          "max_diff_vs_one": float(np.max(np.abs(np.asarray(v, np.float64)
                                                                 - np.asarray(batch_one[k], np.float64))))}
                      for k, v in batch_all.items()},
            "param_spec": sorted({str(a.sharding.spec) for a in jax.tree_util.tree_leaves(runs["all"][0].params)}),
            "images": int(np.prod(batch_all["x" if "x" in batch_all else "query_x"].shape[:2])
                          + (0 if "x" in batch_all else np.prod(batch_all["support_x"].shape[:2]))),
            "pixels_per_image": int(np.prod(data.train.images.shape[1:3])),
        }
    np.savez(out / "steps.npz", **arrays)
    return info


def kernels(out: Path) -> None:
    from ntk_bridge.engine.empirical import empirical_kernels
    from ntk_bridge.engine.fc import depth_sweep, fc_kernels
    from ntk_bridge.engine.spec import NetSpec, to_sphere
    x = to_sphere(np.random.default_rng(0).normal(size=(6, 5)))
    spec = NetSpec(depth=3, b_std=0.1)
    k = fc_kernels(spec, x)
    sweep = dict(depth_sweep(NetSpec(depth=1, activation="erf", W_std=1.5, b_std=0.2), x, depths=[1, 2, 8]))
    emp = empirical_kernels(spec, width=64, seed=1, x1=x)
    np.savez(out / "kernels.npz", theta=k.theta, k=k.k, erf8_theta=sweep[8].theta,
             emp_theta=emp.theta, emp_k=emp.k)


def whole_runs(out: Path, n: int) -> dict:
    data = synthetic_data()
    summary = train(tiny_config(algorithm="mtl", meta_batch=META_BATCH, max_steps=2, eval_every=2,
                                checkpoint_every=2), out / "run", data=data)
    refused = out / "refused"
    try:
        train(tiny_config(meta_batch=n - 1), refused, data=data)
        message = ""
    except BridgeError as err:
        message = str(err)
    return {"summary": {k: summary[k] for k in ("steps", "n_devices", "best_val_acc")},
            "test_acc": summary["test"]["mean"], "refusal": message, "refused_dir_exists": refused.exists()}


def main(out: Path) -> None:
    n = len(jax.devices())
    info = {"n_devices": n, "algorithms": steps(out, n)}
    kernels(out)
    info["runs"] = whole_runs(out, n)
    (out / "info.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
