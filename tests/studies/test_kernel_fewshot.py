"""Kernel predictors on real few-shot tasks: preprocessing, tiled kernels, accuracy, the command."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers.omniglot_zips import omniglot_root, write_tiny_omniglot  # noqa: E402  (tests/ on sys.path, conftest.py)

from ntk_bridge.closed_form.distances import accuracy
from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import METHODS, PredictorConfig, adaptation_only, predict
from ntk_bridge.commands.cli import main
from ntk_bridge.data.sampler import sample_episodes
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.errors import BridgeError
from ntk_bridge.studies import kernel_fewshot as kf


def test_tiny_omniglot_zips_load_with_the_default_split(tmp_path):
    from ntk_bridge.data import load_split

    root = write_tiny_omniglot(tmp_path / "omni")
    counts = {s: load_split("omniglot", root, s) for s in ("train", "val", "test")}
    assert [counts[s].num_classes for s in ("train", "val", "test")] == [25, 5, 10]
    assert counts["test"].images.shape == (100, 28, 28, 1)


def test_downsample_is_block_mean_and_refuses_non_divisors():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    out = kf.downsample(img, 14)
    assert out.shape == (3, 14, 14, 1)
    expect = (img[:, 4:6, 10:12, 0].astype(float) / 255).mean(axis=(1, 2))
    np.testing.assert_allclose(out[:, 2, 5, 0], expect, rtol=0, atol=1e-15)
    np.testing.assert_allclose(kf.downsample(img, 28)[..., 0], img[..., 0] / 255.0)
    with pytest.raises(BridgeError, match="must divide"):
        kf.downsample(img, 5)


def test_normalise_puts_rows_on_the_sphere_after_centring():
    rng = np.random.default_rng(1)
    x = rng.random((6, 4, 4, 1))
    mean = x.mean(axis=0)
    z = kf.normalize_images(x, "pixel", mean)
    np.testing.assert_allclose(np.sum(z * z, axis=1) / 16, 1.0, rtol=1e-12)
    # centring happened before the projection: z is parallel to x - mean
    c = (x - mean).reshape(6, -1)
    cos = np.sum(z * c, axis=1) / np.linalg.norm(z, axis=1) / np.linalg.norm(c, axis=1)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-12)
    zi = kf.normalize_images(x, "image", None)
    np.testing.assert_allclose(zi.sum(axis=1), 0.0, atol=1e-12)


def test_one_hot_targets_follow_theory():
    y = kf.one_hot_targets(np.array([0, 2, 1]), 3)
    np.testing.assert_allclose(y, np.eye(3)[[0, 2, 1]] - 1 / 3)
    np.testing.assert_allclose(y.sum(axis=1), 0.0, atol=1e-15)
    with pytest.raises(BridgeError):
        kf.one_hot_targets(np.array([3]), 3)


def _fake_episode_tasks(shots=2, n_train=3, n_test=5, d=9, seed=0):
    """Episodes over random class prototypes + noise (a tiny stand-in for an image split)."""
    rng = np.random.default_rng(seed)
    n_cls, per = 12, 8
    protos = rng.standard_normal((n_cls, d))
    labels = np.repeat(np.arange(n_cls), per)
    x = kf.normalize_images(protos[labels] + 0.7 * rng.standard_normal((len(labels), d)), "none", None)
    tr = sample_episodes(labels[: 6 * per], 3, shots, 2, n_train, rng)
    te_labels = labels[6 * per:] - 6
    te = sample_episodes(te_labels, 3, shots, 2, n_test, rng)
    return kf.episodes_to_tasks(x[: 6 * per], tr, x[6 * per:], te, 3)


@pytest.mark.parametrize("tile_rows,group_rows", [(1, 1), (7, 30), (5, 10_000), (10_000, 10_000)])
def test_tiled_predictions_equal_full_gram_predictions(tile_rows, group_rows):
    # Kernel entries of a tile and of the full matrix differ by BLAS rounding (~1e-16 relative, a
    # few times more after 8 arccos layers); the outer solves amplify that by their condition
    # number (<= lambda_max / ridge ~ 1e2 / 1e-4), so the predictions must agree to ~1e-10.
    et = _fake_episode_tasks()
    config = kf.FewShotConfig(depths=(1, 3, 8), tile_rows=tile_rows, group_rows=group_rows,
                              predictor=PredictorConfig(inner=InnerLoop(form="flow", tau=2.0), outer_ridge=1e-4))
    fc = kf.fc_kernel_eval(NetSpec(depth=8), config.depths)
    preds, base = kf.predict_all(et, fc, config, METHODS)
    # reference: one kernel over every point (computed on distinct points: an image repeated in two
    # training episodes must have its exact self-similarity, see kernel_fewshot.tile_grams)
    uniq, inv = np.unique(et.tasks.points, axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    assert len(uniq) < len(inv)          # the fake episodes do repeat images
    full = {d: Kernels(theta=g.theta[np.ix_(inv, inv)], k=g.k[np.ix_(inv, inv)])
            for d, g in depth_sweep(NetSpec(depth=8), uniq, depths=config.depths).items()}
    for depth in config.depths:
        for m in METHODS:
            ref = predict(m, et.tasks, full[depth], config.predictor)
            np.testing.assert_allclose(preds[depth][m], ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())
        for b in ("anil", "maml"):
            np.testing.assert_allclose(base[depth][b], adaptation_only(b, et.tasks, full[depth], config.predictor),
                                       rtol=1e-9, atol=1e-11)
    assert len(kf.group_plan(et.tasks, group_rows)) == {1: 5, 30: 3, 10_000: 1}[group_rows]


def test_head_only_with_ridge_inner_loop_matches_sklearn_kernel_ridge():
    from sklearn.kernel_ridge import KernelRidge

    et = _fake_episode_tasks(shots=3)
    mu = 0.3
    config = kf.FewShotConfig(depths=(2,), predictor=PredictorConfig(inner=InnerLoop(form="ridge", mu=mu)))
    preds, _ = kf.predict_all(et, kf.fc_kernel_eval(NetSpec(depth=2), (2,)), config, ["head-only"])
    for j, t in enumerate(et.tasks.test):
        g = depth_sweep(NetSpec(depth=2), t.x_support, depths=(2,))[2].k
        c = depth_sweep(NetSpec(depth=2), t.x_query, t.x_support, depths=(2,))[2].k
        ref = KernelRidge(alpha=mu, kernel="precomputed").fit(g, t.y_support).predict(c)
        np.testing.assert_allclose(preds[2]["head-only"][j], ref, rtol=1e-9, atol=1e-12)


def test_episode_accuracy_and_scoring():
    et = _fake_episode_tasks()
    labels = et.test_labels
    pred = kf.one_hot_targets(labels, 3).copy()
    pred[0, 0] = kf.one_hot_targets(np.array([(labels[0, 0] + 1) % 3]), 3)[0]   # one wrong answer
    acc = kf.episode_accuracy(pred, labels)
    assert acc[0] == pytest.approx(1 - 1 / labels.shape[1]) and np.all(acc[1:] == 1.0)
    assert acc.mean() == pytest.approx(accuracy(pred, labels))
    preds = {1: {"mtl-b": pred, "anil": pred * 2.0}}
    base = {1: {"anil": pred}}
    rows, dist = kf.score(preds, base, labels, (("mtl-b", "anil"),), {"kernel": "fc", "shots": 2, "n_way": 3,
                                                                       "n_query": 2, "train_episodes": 3})
    assert len(rows) == 2 * len(labels)                  # one row per method and episode
    # F_a = P, F_b = 2P, F_b(t=0) = P: d_rel = 1/2, d_tr = 1, and the argmax agrees everywhere
    assert dist["d_rel"].iloc[0] == pytest.approx(0.5) and dist["d_tr"].iloc[0] == pytest.approx(1.0)
    assert dist["agree"].iloc[0] == 1.0
    table = kf.accuracy_table(rows).set_index("method")
    m = table.loc["mtl-b", "acc_mean"]
    half = table.loc["mtl-b", "acc_ci95"]
    assert m == pytest.approx(100 * acc.mean())
    from scipy.stats import t
    assert half == pytest.approx(t.ppf(0.975, len(acc) - 1) * np.std(100 * acc, ddof=1) / math.sqrt(len(acc)))


@pytest.mark.slow
def test_conv_kernel_tiles_equal_one_neural_tangents_call():
    from ntk_bridge.engine.precision import float64
    from ntk_bridge.reference.compat import stax as _stax

    stax = _stax()
    rng = np.random.default_rng(3)
    x1 = kf.normalize_images(rng.random((7, 4, 4, 1)), "image", None)
    x2 = kf.normalize_images(rng.random((5, 4, 4, 1)), "image", None)
    conv = kf.conv_kernel_eval((1, 2), 4, tile=3)
    for depth in (1, 2):
        layers = []
        for _ in range(depth):
            layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=math.sqrt(2.0)), stax.Relu()]
        _, _, kfn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0))
        a, b = x1.reshape(-1, 4, 4, 1), x2.reshape(-1, 4, 4, 1)
        with float64():
            ref_t, ref_k = kfn(a, b, ("ntk", "nngp"))
        got = conv(x1, x2)[depth]
        np.testing.assert_allclose(got.theta, ref_t, rtol=1e-10)
        np.testing.assert_allclose(got.k, ref_k, rtol=1e-10)
        with float64():
            ref_t, ref_k = kfn(a, None, ("ntk", "nngp"))
        got = conv(x1, None)[depth]
        # a point with itself: the correlation is 1 up to ~1e-16 whose rounding depends on the
        # batch; arccos turns that into ~1e-8 radians, so the ReLU derivative kernel (Theta's
        # diagonal) is reproducible to ~1e-9 relative only; K is smooth at rho = 1
        np.testing.assert_allclose(got.theta, ref_t, rtol=1e-8)
        np.testing.assert_allclose(got.k, ref_k, rtol=1e-10)
        off = ~np.eye(len(x1), dtype=bool)
        np.testing.assert_allclose(got.theta[off], np.asarray(ref_t)[off], rtol=1e-10)
        assert np.all(np.diag(got.theta) > np.diag(got.k))   # Theta = K + body share


def _tiny_command(tmp_path, *extra):
    return ["kernel-fewshot", "--root", str(omniglot_root(tmp_path)),
            "--shots", "1", "--train-episodes", "3", "--test-episodes", "4", "--depths", "1,4",
            "--conv-depths", "1,2", "--conv-train-episodes", "2", "--conv-test-episodes", "2", "--group-rows", "60",
            "--tile-rows", "25", "--conv-cache", str(tmp_path / "cache"), "--quiet", *extra]


@pytest.mark.slow
def test_command_on_omniglot_tiny(tmp_path, capsys):
    out, fig = tmp_path / "kf", tmp_path / "kf.png"
    args = _tiny_command(tmp_path, "--labels", "random-slots,global", "--out", str(out), "--figure", str(fig),
                         "--synthetic", "none")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "kernel tile = 25 test rows x <= 90 training columns" in printed
    assert "2 prediction group(s) of 2 test tasks = 60 rows" in printed
    assert "mean +- 95% t-CI over 4 test episodes x 5 queries/class (1 shots; 3 training episodes)" in printed
    assert "+nan" not in printed and "synthetic depth sweep: skipped" in printed
    table = pd.read_csv(out / "accuracy.csv")
    fc = table[table["kernel"] == "fc"]
    assert set(fc["method"]) == set(METHODS) and set(fc["depth"]) == {1, 4}
    assert set(table["labels"]) == {"random-slots", "global"}
    assert (fc["episodes"] == 4).all() and (table[table["kernel"] == "conv"]["episodes"] == 2).all()
    assert set(table[table["kernel"] == "conv"]["depth"]) == {1, 2}
    eps = pd.read_csv(out / "episodes.csv")
    assert len(eps) == 2 * (2 * 6 * 4 + 2 * 6 * 2)        # 2 label spaces x (FC 2 depths + conv 2 depths)
    # accuracies are multiples of 1/25 (5 ways x 5 queries)
    np.testing.assert_allclose((eps["accuracy"] * 25) % 1, 0, atol=1e-9)
    # MTL-A is exactly the head-only predictor (theory.md 5) in the kernel regime
    for labels in ("random-slots", "global"):
        g = fc[fc["labels"] == labels]
        a = g[g["method"] == "mtl-a"].set_index("depth")["acc_mean"]
        h = g[g["method"] == "head-only"].set_index("depth")["acc_mean"]
        pd.testing.assert_series_equal(a, h, check_names=False)
    # on held-out classes the global label space leaves MTL-B exactly at head-only (label_spaces docstring)
    g = eps[(eps["labels"] == "global")].pivot_table(index=["kernel", "depth", "episode"], columns="method",
                                                     values="accuracy")
    np.testing.assert_array_equal(g["mtl-b"], g["head-only"])
    dist = pd.read_csv(out / "distances.csv")
    assert set(dist["pair"]) == {"mtl-b vs anil", "mtl-b vs maml", "mtl-a vs anil"}
    np.testing.assert_allclose(dist[dist["pair"] == "mtl-a vs anil"]["d_tr"], 1.0, rtol=1e-12)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["shots"] == [1] and cfg["depths"] == [1, 4] and cfg["labels"] == ["random-slots", "global"]
    assert fig.stat().st_size > 10_000
    timing = pd.read_csv(out / "timing.csv").set_index("kernel")
    assert timing.loc["conv", "cache_hits"] == 0 and timing.loc["conv", "kernel_entries_per_s"] > 0
    # a rerun reads every conv kernel from the cache and gives the same table
    out2 = tmp_path / "kf2"
    assert main(_tiny_command(tmp_path, "--labels", "random-slots,global", "--out", str(out2), "--figure",
                              str(fig), "--synthetic", "none")) == 0
    t2 = pd.read_csv(out2 / "timing.csv").set_index("kernel")
    assert t2.loc["conv", "kernel_entries_computed"] == 0 and t2.loc["conv", "cache_hits"] > 0
    pd.testing.assert_frame_equal(pd.read_csv(out2 / "accuracy.csv"), table)


@pytest.mark.slow
def test_default_synthetic_sweep_does_not_depend_on_the_working_folder(tmp_path, capsys, monkeypatch):
    # issue 13: run from another folder, the default --synthetic used to be missed and printed "synthetic +nan"
    from ntk_bridge.commands.kernel_fewshot import DEFAULT_SYNTHETIC

    monkeypatch.chdir(tmp_path)
    args = _tiny_command(tmp_path, "--conv-depths", "none", "--out", str(tmp_path / "o"), "--figure",
                         str(tmp_path / "f.png"))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "+nan" not in printed
    if DEFAULT_SYNTHETIC.is_file():
        assert f"synthetic depth sweep: {DEFAULT_SYNTHETIC}" in printed and "synthetic (mean over draws)" in printed
        rates = pd.read_csv(tmp_path / "o" / "distance_rates.csv")
        assert rates["rate_synthetic"].notna().all()
    else:
        assert "synthetic depth sweep: not shown" in printed
    # an explicit path that does not exist is an error before anything is written
    assert main(_tiny_command(tmp_path, "--out", str(tmp_path / "o2"), "--synthetic", "nope.csv")) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_command_bad_input_is_one_line(tmp_path, capsys):
    rc = main(["kernel-fewshot", "--root", str(omniglot_root(tmp_path)), "--shots", "1", "--image-size", "5",
               "--train-episodes", "1", "--test-episodes", "1", "--depths", "1", "--conv-depths", "none",
               "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "must divide" in err


def test_figure_inside_the_result_folder_is_kept(tmp_path):
    # the figure is then part of the result set, written into the staging folder with the CSVs
    out = tmp_path / "kf"
    args = _tiny_command(tmp_path, "--conv-depths", "none", "--depths", "1", "--out", str(out), "--figure",
                         str(out / "fig" / "kf.png"), "--synthetic", "none")
    assert main(args) == 0
    assert (out / "fig" / "kf.png").stat().st_size > 10_000 and (out / "accuracy.csv").is_file()
    assert main(args) == 0                                # a rerun replaces both
    assert (out / "fig" / "kf.png").is_file()


def test_comparison_chooses_each_depth_on_validation_per_label_space_never_on_test():
    """comparison.csv: the depth of each (shots, kernel, labels, method) maximises the validation
    run's accuracy; permuting the test accuracies never moves it; label spaces are chosen apart;
    without a validation run the smallest depth is taken and said so."""
    import pandas as pd

    from ntk_bridge.commands.kernel_fewshot import comparison

    def table(acc):
        rows = [dict(kernel="fc", labels=lab, shots=1, depth=d, method="anil", acc_mean=acc[(lab, d)],
                     acc_ci95=1.0, episodes=10, n_query=5) for lab in ("random-slots", "encoding") for d in (1, 4, 16)]
        return pd.DataFrame(rows)

    test = table({("random-slots", 1): 30, ("random-slots", 4): 20, ("random-slots", 16): 10,
                  ("encoding", 1): 10, ("encoding", 4): 20, ("encoding", 16): 90})
    val = table({("random-slots", 1): 10, ("random-slots", 4): 50, ("random-slots", 16): 20,
                 ("encoding", 1): 60, ("encoding", 4): 20, ("encoding", 16): 10})
    got = comparison(test, val).set_index("labels")
    assert got.loc["random-slots", "depth"] == 4 and got.loc["encoding", "depth"] == 1
    assert got.loc["random-slots", "acc_mean"] == 20 and (got["chosen_by"] == "validation").all()
    flipped = test.assign(acc_mean=100 - test["acc_mean"])
    assert comparison(flipped, val).set_index("labels")["depth"].to_dict() == got["depth"].to_dict()
    fixed = comparison(test, None)
    assert (fixed["depth"] == 1).all() and fixed["chosen_by"].str.startswith("fixed").all()
