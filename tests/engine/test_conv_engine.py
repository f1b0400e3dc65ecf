"""The CNN-GAP conv kernel engine (issue 20): fast arc-cosine, neural-tangents agreement, float32 error,
sharded == one device, streaming chunks, cache invalidation, the GPU script's dry run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ntk_bridge.engine import fast_math
from ntk_bridge.engine.conv_engine import gap_kernels, pair_indices, readout, variances
from ntk_bridge.engine.conv_kernels import ConvKernel, ConvSpec, engine_kernels
from ntk_bridge.engine.precision import float64

REPO = Path(__file__).resolve().parents[2]


def _images(seed, n, s):
    """n flattened s x s images, centred per image and on the sphere of radius s (kernel_fewshot's input)."""
    x = np.random.default_rng(seed).random((n, s * s))
    x -= x.mean(axis=1, keepdims=True)
    return x * (s / np.linalg.norm(x, axis=1, keepdims=True))


# ----------------------------------------------------------------------------- the fast arc-cosine

def _arccos_grid(dtype):
    """[-1, 1] densely, the endpoints, 1 and -1 minus k ulp, and both sides of the branch point 1/2."""
    eps = np.finfo(dtype).eps
    x = np.concatenate([np.linspace(-1, 1, 400_001), 1 - np.arange(200) * eps / 2, -1 + np.arange(200) * eps / 2,
                        1 - np.arange(200) * eps * 37, [-1.0, 1.0, 0.0, 0.5, -0.5]]).astype(dtype)
    return np.concatenate([x, np.nextafter(np.array([0.5, -0.5], dtype), np.array(0, dtype)),
                           np.nextafter(np.array([0.5, -0.5], dtype), np.array([1, -1], dtype))])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_arccos_error_bound_over_the_closed_interval(dtype):
    import jax

    x = np.clip(_arccos_grid(np.dtype(dtype)), -1, 1)
    with float64():
        got = np.asarray(jax.jit(fast_math.arccos)(jax.numpy.asarray(x))).astype(np.longdouble)
    assert got.dtype == np.longdouble
    ref = np.arccos(x.astype(np.longdouble))                  # extended precision reference
    abs_err = np.abs(got - ref)
    assert got[x == 1].max() == 0 and abs(got[x == -1].min() - np.pi) < (1e-15 if dtype == "float64" else 3e-7)
    if dtype == "float64":
        assert abs_err.max() <= fast_math.ARCCOS_ABS_ERROR_F64
        pos = ref > 0
        assert (abs_err[pos] / ref[pos]).max() <= fast_math.ARCCOS_REL_ERROR_F64
        # it is not loose: the float64 rounding of acos itself is ~1e-16
        assert abs_err.max() > 1e-17
    else:
        assert abs_err.max() <= fast_math.ARCCOS_ABS_ERROR_F32


# ----------------------------------------------------------------------------- engine vs neural-tangents

@pytest.mark.parametrize("same", [True, False], ids=["set-with-itself", "two-sets"])
def test_engine_equals_neural_tangents_at_7x7_depths_1_to_4(same):
    from ntk_bridge.reference.conv import reference_kernel

    x1, x2 = _images(0, 4, 7), _images(1, 3, 7)
    spec = ConvSpec(image_size=7, depths=(1, 2, 3, 4), tile=5)
    got = engine_kernels(spec, x1, None if same else x2)
    for depth in (1, 2, 3, 4):
        t, k = reference_kernel(depth, x1, None if same else x2, 7)
        off = ~np.eye(len(x1), dtype=bool) if same else np.ones(t.shape, bool)
        np.testing.assert_allclose(got[depth].theta[off], t[off], rtol=1e-10, atol=0)
        np.testing.assert_allclose(got[depth].k, k, rtol=1e-10, atol=0)
        if same:
            # an image with itself: rho = 1 exactly here, neural-tangents' rounding of rho near 1 is
            # amplified by arccos' infinite slope to ~1e-9 of Theta's diagonal (K is smooth there)
            np.testing.assert_allclose(np.diag(got[depth].theta), np.diag(t), rtol=1e-8)
            np.testing.assert_array_equal(got[depth].theta, got[depth].theta.T)


def test_engine_variances_are_the_diagonal_of_the_pair_recursion():
    # q_l(x)_i from the diagonal alone == K_l(x, x)[i, i]; at depth 1 with W_r = 1, K = mean_ij Kr_1 and
    # Kr_1[i, i] = q_1[i] / 2, so the readout of a single-pixel-wide image checks the closed form
    x = _images(2, 3, 5).reshape(-1, 5, 5)
    q = variances(x, 3, np.sqrt(2.0))
    box = np.zeros_like(x)
    for i in range(5):
        for j in range(5):
            box[:, i, j] = (x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2] ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(q[:, 0], 2.0 / 9.0 * box, rtol=1e-14)
    assert q.shape == (3, 3, 5, 5) and np.all(q > 0)


def test_float32_mode_error_against_float64_is_small_and_stated():
    x1, x2 = _images(3, 5, 7), _images(4, 4, 7)
    f64 = engine_kernels(ConvSpec(image_size=7, depths=(1, 4, 8)), x1, x2)
    f32 = engine_kernels(ConvSpec(image_size=7, depths=(1, 4, 8), dtype="float32"), x1, x2)
    for d in (1, 4, 8):
        for name in ("theta", "k"):
            a, b = getattr(f64[d], name), getattr(f32[d], name)
            rel = np.max(np.abs(a - b) / np.abs(a))
            assert rel < 1e-5, (d, name, rel)          # float32 eps 6e-8, ~8 layers of rounding
            assert rel > 0                             # really computed in float32


def test_chunk_size_does_not_change_the_values():
    x1, x2 = _images(5, 6, 5), _images(6, 5, 5)
    ref = engine_kernels(ConvSpec(image_size=5, depths=(1, 3), tile=64), x1, x2)
    for tile in (1, 4, 7):
        got = engine_kernels(ConvSpec(image_size=5, depths=(1, 3), tile=tile), x1, x2)
        for d in (1, 3):
            np.testing.assert_allclose(got[d].theta, ref[d].theta, rtol=1e-14, atol=0)
            np.testing.assert_allclose(got[d].k, ref[d].k, rtol=1e-14, atol=0)


def test_default_chunk_keeps_a_state_array_within_the_cpu_budget_and_scales_with_devices():
    from ntk_bridge.engine.conv_engine import CPU_STATE_BYTES, GPU_STATE_ENTRIES, default_chunk

    for size in (4, 7, 14, 28, 32):
        n2 = (size * size) ** 2
        for dtype, b in (("float64", 8), ("float32", 4)):
            p = default_chunk(size * size, dtype, "cpu")
            assert p & (p - 1) == 0                     # a power of two
            assert p == 1 or p * n2 * b <= CPU_STATE_BYTES < 2 * p * n2 * b   # the largest one within budget
        g = default_chunk(size * size, "float64", "gpu")
        assert g == 1 or g * n2 <= GPU_STATE_ENTRIES < 2 * g * n2
    assert [default_chunk(s * s, "float64", "cpu") for s in (7, 14, 28)] == [64, 4, 1]
    assert default_chunk(14 * 14, "float64", "cpu", n_devices=4) == 16
    x1, x2 = _images(5, 6, 5), _images(6, 5, 5)          # chunk None (auto) gives the same values
    auto = engine_kernels(ConvSpec(image_size=5, depths=(1, 3)), x1, x2)
    one = engine_kernels(ConvSpec(image_size=5, depths=(1, 3), tile=1), x1, x2)
    np.testing.assert_allclose(auto[3].theta, one[3].theta, rtol=1e-14, atol=0)


def test_set_with_itself_computes_only_the_upper_triangle_and_mirrors_it():
    rows, cols = pair_indices(5, None)
    assert len(rows) == 15 and np.all(rows <= cols)
    assert len(pair_indices(5, 4)[0]) == 20
    x = _images(7, 5, 5)
    seen = []
    with float64():
        kgap, ugap = gap_kernels(x.reshape(-1, 5, 5), None, 2, np.sqrt(2.0), chunk=4, progress=seen.append)
    assert seen == [4, 8, 12, 15]                      # 15 pairs in chunks of 4, not 25
    full = engine_kernels(ConvSpec(image_size=5, depths=(1, 2)), x, x.copy())
    out = readout(kgap, ugap, (1, 2), 1.0)
    for d in (1, 2):
        off = ~np.eye(5, dtype=bool)
        np.testing.assert_allclose(out[d][0][off], full[d].theta[off], rtol=1e-13)
        np.testing.assert_array_equal(out[d][0], out[d][0].T)


# ----------------------------------------------------------------------------- devices

SHARDED_CHILD = r"""
import json, sys
import numpy as np
import jax
from ntk_bridge.engine.conv_kernels import ConvSpec, engine_kernels
args = json.loads(sys.argv[1])
x1, x2 = np.asarray(args["x1"]), np.asarray(args["x2"])
spec = ConvSpec(image_size=args["s"], depths=(1, 2, 3), tile=args["tile"])
out = {"devices": len(jax.local_devices())}
for name, b in (("cross", x2), ("same", None)):
    r = engine_kernels(spec, x1, b)
    out[name] = {str(d): [r[d].theta.tolist(), r[d].k.tolist()] for d in r}
print("RESULT" + json.dumps(out))
"""


def _run_child(devices, x1, x2, s, tile):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    arg = json.dumps({"x1": x1.tolist(), "x2": x2.tolist(), "s": s, "tile": tile})
    res = subprocess.run([sys.executable, "-c", SHARDED_CHILD, arg], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_sharded_over_4_virtual_devices_equals_one_device():
    x1, x2 = _images(8, 7, 5), _images(9, 5, 5)
    one = _run_child(1, x1, x2, 5, 6)
    four = _run_child(4, x1, x2, 5, 6)                 # 6 pairs per step -> 8: 2 per device, padded
    assert (one["devices"], four["devices"]) == (1, 4)
    for name in ("cross", "same"):
        for d in ("1", "2", "3"):
            for i in range(2):
                a, b = np.asarray(one[name][d][i]), np.asarray(four[name][d][i])
                np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_two_processes_under_jax_distributed_give_the_one_process_kernel(tmp_path):
    """A multi-host run on one machine: two processes joined through the JAX coordinator variables
    (as `--distributed`) deal the pair chunks round-robin and sum their partial kernels; each ends
    with the whole kernel, equal to the one-process one to 1e-12 (a set with itself and two sets)."""
    from helpers.conv_multihost_child import images, kernels
    from helpers.processes import run_processes

    run_processes("helpers.conv_multihost_child", tmp_path, env={"XLA_FLAGS": ""}, timeout=600)
    a, b = images(0, 5), images(1, 3)
    want = dict(zip(("self_k", "self_u", "cross_k", "cross_u"), kernels(a, None) + kernels(a, b)))
    for i in range(2):
        got = np.load(tmp_path / f"conv_{i}.npz")
        assert int(got["processes"]) == 2
        for name, ref in want.items():
            assert np.abs(ref).min() > 0                # every pair filled (no chunk left at zero)
            np.testing.assert_allclose(got[name], ref, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- cache

def test_cache_is_invalidated_by_one_changed_pixel(tmp_path):
    x1, x2 = _images(10, 4, 5), _images(11, 3, 5)
    spec = ConvSpec(image_size=5, depths=(1, 2), tile=4)
    first = ConvKernel(spec, tmp_path)
    a = first(x1, x2)
    again = ConvKernel(spec, tmp_path)
    b = again(x1, x2)
    assert (again.stats.hits, again.stats.misses, again.stats.computed_entries) == (1, 0, 0)
    np.testing.assert_array_equal(b[2].theta, a[2].theta)
    x2b = x2.copy()
    x2b[1, 12] = np.nextafter(x2b[1, 12], 10.0)       # one pixel, one ulp
    c = again(x1, x2b)
    assert (again.stats.hits, again.stats.misses, again.stats.computed_entries) == (1, 1, 12)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_array_equal(c[2].theta[:, [0, 2]], a[2].theta[:, [0, 2]])   # recomputed, same values
    x2b[1, 12] += 1e-3                                  # a visible change moves only that image's column
    d = again(x1, x2b)[2].theta
    assert not np.allclose(d[:, 1], a[2].theta[:, 1], rtol=1e-9, atol=0)
    np.testing.assert_array_equal(d[:, [0, 2]], a[2].theta[:, [0, 2]])
    # float32 is another cache entry, float64's key is what it was before the engine (CACHE_VERSION 1)
    f32 = ConvKernel(ConvSpec(image_size=5, depths=(1, 2), tile=4, dtype="float32"), tmp_path)
    f32(x1, x2)
    assert f32.stats.misses == 1 and "dtype" not in spec.network()
    assert len(list(tmp_path.glob("*.npz"))) == 4


# ----------------------------------------------------------------------------- the prepared GPU script

@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu_fills_the_cache_that_kernel_fewshot_reads(tmp_path, capsys):
    import pandas as pd
    from helpers.omniglot_zips import omniglot_root

    from ntk_bridge.commands.cli import main

    flags = ["--root", str(omniglot_root(tmp_path)), "--shots", "1", "--train-episodes", "2", "--test-episodes", "3",
             "--depths", "1", "--conv-depths", "1,2", "--conv-image-size", "4", "--conv-train-episodes", "2",
             "--conv-test-episodes", "2", "--group-rows", "60", "--tile-rows", "25", "--conv-tile", "16",
             "--conv-cache", str(tmp_path / "cache"), "--labels", "random-slots", "--quiet"]
    env = {**os.environ, "OUT": str(tmp_path / "out"), "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "gpu_conv_kernels.py"), *flags], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_conv_kernels.json").read_text())
    assert report["device"].startswith("cpu") and report["entries_computed"] > 0 and report["cache_hits"] == 0
    assert report["entries_per_s_all_depths"] > 0 and report["jax"]
    out = tmp_path / "kf"
    assert main(["kernel-fewshot", *flags, "--out", str(out), "--figure", str(tmp_path / "kf.png"),
                 "--synthetic", "none"]) == 0
    timing = pd.read_csv(out / "timing.csv").set_index("kernel")
    assert timing.loc["conv", "kernel_entries_computed"] == 0
    assert timing.loc["conv", "cache_hits"] == report["cache_misses"]


# ----------------------------------------------------------------------------- the conv studies' depth choice

def test_conv_study_depth_is_chosen_on_validation_never_on_test():
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("conv_select", REPO / "experiments" / "conv_select.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = {"kernel": "conv", "labels": "encoding", "shots": 1, "method": "maml", "acc_ci95": 1.0, "episodes": 20}
    val = pd.DataFrame([{**base, "depth": d, "acc_mean": a} for d, a in ((1, 50.0), (2, 60.0), (4, 60.0))])
    test = pd.DataFrame([{**base, "depth": d, "acc_mean": a} for d, a in ((1, 90.0), (2, 40.0), (4, 70.0))])
    sel = mod.choose(val, test)
    assert sel["depth"].tolist() == [2] and sel["test_acc"].tolist() == [40.0]    # validation tie -> smaller depth
    for perm in ([70.0, 90.0, 40.0], [40.0, 70.0, 90.0]):                          # test numbers never move it
        assert mod.choose(val, test.assign(acc_mean=perm))["depth"].tolist() == [2]


def test_conv_minus_fc_is_paired_over_the_same_test_episodes_at_each_kernels_chosen_depth():
    import importlib.util

    import pandas as pd

    from ntk_bridge.errors import BridgeError
    from ntk_bridge.stats import t_quantile

    spec = importlib.util.spec_from_file_location("conv_select", REPO / "experiments" / "conv_select.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sel = pd.DataFrame([{"kernel": "fc", "labels": "encoding", "shots": 1, "method": "anil", "depth": 4},
                        {"kernel": "conv", "labels": "encoding", "shots": 1, "method": "anil", "depth": 2}])
    fc = np.array([0.4, 0.6, 0.5, 0.2])
    conv = np.array([0.6, 0.6, 0.9, 0.4])
    rows = [{"kernel": k, "labels": "encoding", "shots": 1, "method": "anil", "depth": d, "episode": e, "accuracy": a}
            for k, d, acc in (("fc", 4, fc), ("conv", 2, conv)) for e, a in enumerate(acc)]
    rows += [{"kernel": "conv", "labels": "encoding", "shots": 1, "method": "anil", "depth": 1, "episode": e,
              "accuracy": 0.0} for e in range(4)]                                 # a depth not chosen: ignored
    out = mod.paired(sel, pd.DataFrame(rows))
    diff = 100 * (conv - fc)
    assert out["conv_minus_fc"].iloc[0] == pytest.approx(diff.mean())
    assert out["ci95"].iloc[0] == pytest.approx(t_quantile(4) * diff.std(ddof=1) / 2)
    assert out["episodes"].iloc[0] == 4
    with pytest.raises(BridgeError, match="different test episodes"):
        mod.paired(sel, pd.DataFrame(rows[:-5]))                                  # one FC/conv episode missing
