"""Data-parallel training on several devices equals the one-device step; kernels ignore the device count.

The multi-device checks run in a child process (``helpers/multidevice_child.py``) with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before it imports JAX: 4 virtual CPU
devices. It takes one training step of MTL, ANIL (vmap over episodes) and MAML (second order,
episodes one after another) from the same state, batch and key three ways: ``jax.jit`` as before
data parallelism, the data-parallel step on 1 device and on all 4.

Tolerance of "equal". The 4-device step computes the same function; only the order of the
floating-point sums differs (per-device partial sums, then an all-reduce). Reordering a sum of
``L`` float32 terms moves it by at most about ``2 L eps`` times the sum of the magnitudes
(``eps = 2^-23``); the longest sum in a step is a first-layer convolution weight gradient, over
every pixel of every image of the batch, ``L = images * pixels``. RAdam's first step is
``-lr * g`` (no adaptive scaling while its variance estimate is undefined), so the parameter
changes inherit the gradients' rounding. We allow ``4 L eps`` relative to the largest change:
the update of 4 tasks of 9 images of 16x16 pixels (``L = 9216``) may move by 0.44% of its
largest entry, while a wrong split (an inner-loop gradient summed over the devices: the first
version of map_episodes) moved it by 260%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.processes import run_processes

from ntk_bridge.errors import BridgeError
from ntk_bridge.train.parallel import check_split, coordinator_settings

HERE = Path(__file__).resolve().parents[1]   # tests/: helpers.* import from there
N_DEVICES = 4
EPS32 = float(np.finfo(np.float32).eps)
ALGORITHMS = ("mtl", "anil", "maml")


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    """Run the child once with 4 virtual CPU devices; its info.json and arrays."""
    out = tmp_path_factory.mktemp("multidevice")
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={N_DEVICES}",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "helpers.multidevice_child", str(out)], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"info": json.loads((out / "info.json").read_text()), "steps": dict(np.load(out / "steps.npz")),
            "kernels": dict(np.load(out / "kernels.npz"))}


@pytest.mark.slow
def test_the_child_saw_four_devices(child):
    assert child["info"]["n_devices"] == N_DEVICES


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_batch_is_split_over_the_devices(child, name):
    """Every batch array is split along its task / episode axis: one shard of T/4 per device;
    the parameters after the step are replicated."""
    info = child["info"]["algorithms"][name]
    for key, b in info["batch"].items():
        assert b["spec"] == "P('data',)", key
        assert sorted(b["shard_devices"]) == list(range(N_DEVICES)), key
        assert all(s == [b["shape"][0] // N_DEVICES] + b["shape"][1:] for s in b["shard_shapes"]), key
    assert info["param_spec"] == ["P()"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_batch_is_the_same_on_four_devices(child, name):
    """Augmentation and normalisation are elementwise and their random numbers do not depend on
    the split (partitionable threefry): the images agree to a few ulps, the labels exactly."""
    for key, b in child["info"]["algorithms"][name]["batch"].items():
        assert b["max_diff_vs_one"] <= 4 * EPS32 * max(b["max_abs"], 1.0), key
        if key.endswith("y") or key == "classes":
            assert b["max_diff_vs_one"] == 0, key


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_four_device_step_equals_the_one_device_step(child, name):
    info, z = child["info"]["algorithms"][name], child["steps"]
    init, one, four = z[f"{name}/init"], z[f"{name}/one/params"], z[f"{name}/all/params"]
    update = np.abs(one - init).max()
    length = info["images"] * info["pixels_per_image"]
    tol = 4 * length * EPS32
    assert update > 100 * EPS32 * np.abs(init).max()  # the step moved the weights well above float32 resolution
    assert np.abs(four - one).max() <= tol * update, (np.abs(four - one).max() / update, tol)
    loss_one, loss_four = z[f"{name}/one/metrics"][0], z[f"{name}/all/metrics"][0]
    assert abs(loss_four - loss_one) <= tol * abs(loss_one)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_one_device_step_is_the_plain_jit_step(child, name):
    """On one device the data-parallel step compiles the program the loop ran before."""
    z = child["steps"]
    np.testing.assert_array_equal(z[f"{name}/one/params"], z[f"{name}/plain/params"])
    np.testing.assert_array_equal(z[f"{name}/one/metrics"], z[f"{name}/plain/metrics"])


@pytest.mark.slow
def test_kernels_do_not_depend_on_the_device_count(child):
    """The FC engine (numpy) gives the same bits; the empirical NTK (JAX, float64) agrees to 1e-12."""
    from ntk_bridge.engine.empirical import empirical_kernels
    from ntk_bridge.engine.fc import depth_sweep, fc_kernels
    from ntk_bridge.engine.spec import NetSpec, to_sphere
    k4 = child["kernels"]
    x = to_sphere(np.random.default_rng(0).normal(size=(6, 5)))
    spec = NetSpec(depth=3, b_std=0.1)
    k = fc_kernels(spec, x)
    np.testing.assert_array_equal(k4["theta"], k.theta)
    np.testing.assert_array_equal(k4["k"], k.k)
    sweep = depth_sweep(NetSpec(depth=1, activation="erf", W_std=1.5, b_std=0.2), x, depths=[1, 2, 8])
    np.testing.assert_array_equal(k4["erf8_theta"], sweep[8].theta)
    emp = empirical_kernels(spec, width=64, seed=1, x1=x)
    for name, ref in (("emp_theta", emp.theta), ("emp_k", emp.k)):
        assert np.abs(k4[name] - ref).max() <= 1e-12 * np.abs(ref).max(), name


@pytest.mark.slow
def test_a_whole_run_trains_on_four_devices_and_a_bad_split_is_refused(child):
    runs = child["info"]["runs"]
    assert runs["summary"]["n_devices"] == N_DEVICES and runs["summary"]["steps"] == 2
    assert 0 <= runs["test_acc"] <= 100
    msg = runs["refusal"]
    assert "\n" not in msg and "meta_batch=3" in msg and f"multiple of {N_DEVICES}" in msg
    assert not runs["refused_dir_exists"]  # refused before anything was written


@pytest.mark.slow
def test_two_processes_take_the_four_device_step(child, tmp_path):
    """A multi-host run on one machine: two processes of 2 CPU devices each, joined through the
    JAX coordinator variables (as ``train --distributed``), take the same step as one process with
    4 devices (same tolerance), and both processes end with the same parameters."""
    run_processes("helpers.multihost_child", tmp_path, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    for name in ("mtl", "maml"):
        runs = [np.load(tmp_path / f"{name}_{i}.npz") for i in range(2)]
        assert all(int(r["processes"]) == 2 and int(r["devices"]) == N_DEVICES and int(r["local_shards"]) == 2
                   for r in runs)
        np.testing.assert_array_equal(runs[0]["params"], runs[1]["params"])
        info, z = child["info"]["algorithms"][name], child["steps"]
        update = np.abs(z[f"{name}/one/params"] - z[f"{name}/init"]).max()
        tol = 4 * info["images"] * info["pixels_per_image"] * EPS32
        assert np.abs(runs[0]["params"] - z[f"{name}/all/params"]).max() <= tol * update
        assert abs(float(runs[0]["loss"]) - z[f"{name}/all/metrics"][0]) <= tol * abs(z[f"{name}/all/metrics"][0])


def test_check_split_names_the_fix():
    check_split(8, 4)
    check_split(3, 1)
    with pytest.raises(BridgeError) as err:
        check_split(6, 4)
    text = str(err.value)
    assert "\n" not in text and "meta_batch=6" in text and "multiple of 4 (e.g. 8)" in text and "devices=3" in text


def test_coordinator_settings_from_the_environment():
    assert coordinator_settings({}) == {}
    env = {"JAX_COORDINATOR_ADDRESS": "host0:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert coordinator_settings(env) == {"coordinator_address": "host0:1234", "num_processes": 2, "process_id": 1}
    with pytest.raises(BridgeError, match="JAX_PROCESS_ID not set"):
        coordinator_settings({k: v for k, v in env.items() if k != "JAX_PROCESS_ID"})
    with pytest.raises(BridgeError, match="must be in 0..JAX_NUM_PROCESSES-1"):
        coordinator_settings({**env, "JAX_PROCESS_ID": "2"})
    with pytest.raises(BridgeError, match="must be integers"):
        coordinator_settings({**env, "JAX_NUM_PROCESSES": "two"})
