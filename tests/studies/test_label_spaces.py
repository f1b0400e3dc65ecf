"""Label spaces of the kernel predictors on real episodes, the conv kernel cache, the encoder checks (issue 11)."""

import json
import math

import numpy as np
import pytest

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import METHODS, PredictorConfig
from ntk_bridge.commands.cli import main
from ntk_bridge.data.sampler import Episodes, sample_episodes
from ntk_bridge.engine.spec import NetSpec
from ntk_bridge.errors import BridgeError
from ntk_bridge.studies import kernel_fewshot as kf
from ntk_bridge.studies import label_spaces as ls

N_WAY, SHOTS, N_Q, PER = 3, 2, 2, 8


def _fixed_episodes(n_eps, classes, rng):
    """Episodes that all use ``classes`` in that slot order (random images of each)."""
    classes = np.asarray(classes)
    sup, qry = [], []
    for _ in range(n_eps):
        picks = [rng.permutation(PER)[:SHOTS + N_Q] + c * PER for c in classes]
        sup.append(np.concatenate([p[:SHOTS] for p in picks]))
        qry.append(np.concatenate([p[SHOTS:] for p in picks]))
    lab = lambda k: np.tile(np.repeat(np.arange(len(classes)), k), (n_eps, 1))
    return Episodes(np.tile(classes, (n_eps, 1)), np.array(sup), lab(SHOTS), np.array(qry), lab(N_Q))


def _images(n_cls, d, rng):
    protos = rng.standard_normal((n_cls, d))
    labels = np.repeat(np.arange(n_cls), PER)
    return kf.normalize_images(protos[labels] + 0.8 * rng.standard_normal((len(labels), d)), "none", None), labels


def _config():
    return kf.FewShotConfig(depths=(1, 4), tile_rows=9, group_rows=20,
                            predictor=PredictorConfig(inner=InnerLoop(form="flow", tau=1.0), outer_ridge=1e-4))


def _run(et, codes):
    """{space: (preds, base)} of every method on the FC kernel for the given codes."""
    spaces = {c.name: (kf.relabel(et, c), c.test) for c in codes}
    return kf.predict_labelled(et, kf.fc_kernel_eval(NetSpec(depth=4), (1, 4)), _config(), METHODS, spaces)


def test_global_equals_random_slots_when_every_episode_has_the_same_classes_in_the_same_slots():
    rng = np.random.default_rng(0)
    x, _ = _images(N_WAY, 7, rng)
    names = np.array([f"c{i}" for i in range(N_WAY)], dtype=object)
    tr, te = _fixed_episodes(4, range(N_WAY), rng), _fixed_episodes(5, range(N_WAY), rng)
    et = kf.episodes_to_tasks(x, tr, x, te, N_WAY, names, names)
    rs = ls.random_slots(4, 5, N_WAY)
    gl = ls.global_targets(et.train_names, et.test_names, names)
    assert gl.dim == N_WAY + N_WAY                      # C base outputs + n_way fresh ones (unused here)
    out = _run(et, [rs, gl])
    for depth in (1, 4):
        for m in METHODS:
            a, b = out["random-slots"][0][depth][m], out["global"][0][depth][m]
            # same targets on the same coordinates; the fresh ones have zero targets -> zero outputs
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * np.abs(a).max())
            np.testing.assert_array_equal(kf.episode_accuracy(a, et.test_labels, rs.offsets()),
                                          kf.episode_accuracy(b, et.test_labels, gl.offsets()))
    # the raw outputs of random slots are the projections (outputs sum to 0 over slots)
    raw, _ = kf.predict_all(et, kf.fc_kernel_eval(NetSpec(depth=4), (1, 4)), _config(), ["mtl-b"])
    np.testing.assert_allclose(out["random-slots"][0][4]["mtl-b"], raw[4]["mtl-b"], rtol=1e-12, atol=1e-14)


def _novel_setup(seed=1):
    """8 base classes (training episodes use only 6 of them: 2 fall into the "rest" coordinate) and 3
    novel test classes that every test episode uses in the same slots."""
    rng = np.random.default_rng(seed)
    x_tr, y_tr = _images(8, 6, rng)
    x_te, _ = _images(N_WAY, 6, rng)
    base = np.array([f"b{i}" for i in range(8)], dtype=object)
    novel = np.array([f"n{i}" for i in range(N_WAY)], dtype=object)
    tr = sample_episodes(y_tr[y_tr < 6], N_WAY, SHOTS, N_Q, 5, rng)
    te = _fixed_episodes(4, range(N_WAY), rng)
    return kf.episodes_to_tasks(x_tr, tr, x_te, te, N_WAY, base, novel), base


def test_encoding_with_identity_encodings_equals_global():
    et, base = _novel_setup()
    gl = ls.global_targets(et.train_names, et.test_names, base)
    assert gl.dim == 6 + 1 + N_WAY                      # used base classes, one "rest", fresh slots
    # identity encodings: base class c -> e_c, a novel image of slot j -> e_{C+j} (its prototype)
    c = len(base)
    table = np.concatenate([np.eye(c), np.zeros((c, N_WAY))], axis=1)
    feats = np.eye(c + N_WAY)[c + np.arange(N_WAY).repeat(PER)]      # novel class j's images
    protos = ls.support_prototypes(feats, et.test_eps.support_idx, et.test_eps.support_labels, N_WAY)
    enc = ls.encoding_codes(table, base, et.train_names, et.test_names, protos)
    out = _run(et, [gl, enc])
    for depth in (1, 4):
        scale = np.abs(out["global"][0][depth]["head-only"]).max()
        for m in METHODS:
            a, b = out["global"][0][depth][m], out["encoding"][0][depth][m]
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * scale)
            if m != "ntk":   # NTK's scores of new classes are all equal (rounding noise): ties, no decision
                np.testing.assert_array_equal(kf.episode_accuracy(a, et.test_labels, gl.offsets()),
                                              kf.episode_accuracy(b, et.test_labels, enc.offsets()))
        for g in ("anil", "maml"):
            np.testing.assert_allclose(out["encoding"][1][depth][g], out["global"][1][depth][g], rtol=1e-10,
                                       atol=1e-12)


def test_global_on_new_classes_reduces_mtl_b_and_anil_to_head_only():
    # training targets are 0 on the fresh outputs and orthogonal to the centring vector mu
    # (mu . (e_c - mu) = 1/C - C/C^2 = 0), so the transfer terms vanish from every test class score
    # f . c_j = f_{C+j} - mu . f: MTL-B and ANIL score exactly as head-only
    et, base = _novel_setup(seed=2)
    gl = ls.global_targets(et.train_names, et.test_names, base)
    preds = _run(et, [gl])["global"][0]
    for depth in (1, 4):
        h = preds[depth]["head-only"]
        for m in ("mtl-b", "anil"):
            np.testing.assert_allclose(preds[depth][m], h, rtol=0, atol=1e-10 * np.abs(h).max())
            np.testing.assert_array_equal(kf.episode_accuracy(preds[depth][m], et.test_labels, gl.offsets()),
                                          kf.episode_accuracy(h, et.test_labels, gl.offsets()))
        # NTK regression: all slots of a new class score the same (nothing was learnt for them)
        ntk = preds[depth]["ntk"]
        np.testing.assert_allclose(ntk - ntk.mean(axis=-1, keepdims=True), 0, atol=1e-12 * np.abs(h).max())


def test_global_codes_layout_and_rest_coordinate():
    base = ["a", "b", "c", "d"]
    codes = ls.global_targets(np.array([["a", "b"]], dtype=object), np.array([["x", "a"]], dtype=object), base)
    # used: a, b; rest: c, d (m = 2); fresh: 2 slots
    expect_train = np.array([[1 - 0.25, -0.25, -math.sqrt(2) / 4, 0, 0], [-0.25, 1 - 0.25, -math.sqrt(2) / 4, 0, 0]])
    np.testing.assert_allclose(codes.train[0], expect_train)
    np.testing.assert_allclose(codes.test[0, 0], [-0.25, -0.25, -math.sqrt(2) / 4, 1, 0])   # new class: fresh slot 0
    np.testing.assert_allclose(codes.test[0, 1], expect_train[0])                             # base class keeps its row
    with pytest.raises(BridgeError, match="outside the base classes"):
        ls.global_targets(np.array([["a", "z"]], dtype=object), np.array([["x", "y"]], dtype=object), base)


def test_support_prototypes_and_class_means():
    f = np.arange(12.0).reshape(6, 2)
    p = ls.support_prototypes(f, np.array([[0, 1, 4, 5]]), np.array([[0, 0, 1, 1]]), 2)
    np.testing.assert_allclose(p, [[[1, 2], [9, 10]]])
    np.testing.assert_allclose(ls.class_means(f, np.array([0, 1, 0, 1, 0, 1]), 2), [[4, 5], [6, 7]])


# ----------------------------------------------------------------------------- conv kernels and cache

def test_conv_kernel_all_depths_match_unbatched_neural_tangents():
    from ntk_bridge.engine.conv_kernels import ConvKernel, ConvSpec
    from ntk_bridge.reference.conv import reference_kernel

    rng = np.random.default_rng(3)
    x1 = kf.normalize_images(rng.random((7, 4, 4, 1)), "image", None)
    x2 = kf.normalize_images(rng.random((5, 4, 4, 1)), "image", None)
    spec = ConvSpec(image_size=4, depths=(1, 3, 8), tile=3)
    kern = ConvKernel(spec)
    got, same = kern(x1, x2), kern(x1, None)
    for depth in (1, 3, 8):
        t, k = reference_kernel(depth, x1, x2, spec.image_size)
        assert got[depth].theta.dtype == np.float64
        np.testing.assert_allclose(got[depth].theta, t, rtol=1e-10, atol=0)
        np.testing.assert_allclose(got[depth].k, k, rtol=1e-10, atol=0)
        t, k = reference_kernel(depth, x1, None, spec.image_size)
        off = ~np.eye(len(x1), dtype=bool)
        np.testing.assert_allclose(same[depth].theta[off], t[off], rtol=1e-10)
        np.testing.assert_allclose(same[depth].k, k, rtol=1e-10)
        # the diagonal: the engine sets rho = 1 exactly; neural-tangents' rho = 1 up to rounding, which
        # arccos turns into ~1e-8 (see kernel_fewshot tests)
        np.testing.assert_allclose(np.diag(same[depth].theta), np.diag(t), rtol=1e-7)
    assert kern.stats.computed_entries == 7 * 5 + 7 * 8 // 2


@pytest.mark.slow
def test_conv_cache_returns_identical_arrays_and_is_invalidated_by_images_or_spec(tmp_path):
    from ntk_bridge.engine.conv_kernels import ConvKernel, ConvSpec

    rng = np.random.default_rng(4)
    x1 = kf.normalize_images(rng.random((5, 4, 4, 1)), "image", None)
    x2 = kf.normalize_images(rng.random((4, 4, 4, 1)), "image", None)
    spec = ConvSpec(image_size=4, depths=(1, 2), tile=4)
    first = ConvKernel(spec, tmp_path)
    a = first(x1, x2)
    assert (first.stats.misses, first.stats.hits) == (1, 0) and len(list(tmp_path.glob("*.npz"))) == 1
    again = ConvKernel(spec, tmp_path)                    # a new process would start like this
    b = again(x1, x2)
    assert (again.stats.misses, again.stats.hits, again.stats.computed_entries) == (0, 1, 0)
    for d in (1, 2):
        np.testing.assert_array_equal(b[d].theta, a[d].theta)
        np.testing.assert_array_equal(b[d].k, a[d].k)
    x1b = x1.copy()
    x1b[0, 0] += 1e-9                                    # one pixel changed
    again(x1b, x2)
    assert again.stats.misses == 1
    other = ConvKernel(ConvSpec(image_size=4, depths=(1, 2), tile=4, W_std=1.3), tmp_path)
    c = other(x1, x2)
    assert other.stats.misses == 1 and not np.allclose(c[2].theta, a[2].theta)
    deeper = ConvKernel(ConvSpec(image_size=4, depths=(1, 2, 3), tile=4), tmp_path)
    deeper(x1, x2)
    assert deeper.stats.misses == 1
    again(x1, None)                                      # x1 with itself is another entry
    assert again.stats.misses == 2 and len(list(tmp_path.glob("*.npz"))) == 5


# ----------------------------------------------------------------------------- encoder run folders

def _tiny_root(tmp_path, chars=5):
    from helpers.omniglot_zips import write_tiny_omniglot

    return write_tiny_omniglot(tmp_path / f"omni{chars}", chars=chars)


def _kf_args(root, tmp_path, encoder):
    return ["kernel-fewshot", "--root", str(root), "--shots", "1", "--train-episodes", "2", "--test-episodes", "2",
            "--depths", "1", "--conv-depths", "none", "--labels", "random-slots,encoding", "--encoder", str(encoder),
            "--out", str(tmp_path / "out"), "--figure", str(tmp_path / "f.png"), "--quiet", "--synthetic", "none"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_encoder_folder_is_refused_in_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    assert main(_kf_args(_tiny_root(tmp_path), tmp_path, missing)) == 2
    err = _one_line_error(capsys)
    assert str(missing) in err and "does not exist" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "f.png").exists()


def test_encoder_trained_on_other_classes_is_refused_in_one_line(tmp_path, capsys):
    from ntk_bridge.train.config import load_config

    run = tmp_path / "run_other"
    run.mkdir()
    other = _tiny_root(tmp_path, chars=4)                # 20 training classes instead of 25
    (run / "config.json").write_text(json.dumps(load_config("omniglot_1shot").replace(root=str(other)).to_dict()))
    assert main(_kf_args(_tiny_root(tmp_path), tmp_path, run)) == 2
    err = _one_line_error(capsys)
    assert str(run) in err and "other classes" in err
    assert not (tmp_path / "out").exists()


def test_encoding_without_encoder_and_encoder_without_encoding_are_refused(tmp_path, capsys):
    args = _kf_args(_tiny_root(tmp_path), tmp_path, tmp_path)
    i = args.index("--encoder")
    assert main(args[:i] + args[i + 2:]) == 2
    assert "--encoder" in _one_line_error(capsys)
    j = args.index("--labels")
    assert main(args[:j] + ["--labels", "global"] + args[j + 2:]) == 2
    assert "--encoder" in _one_line_error(capsys)


@pytest.mark.slow
def test_encoding_end_to_end_with_a_tiny_trained_run(tmp_path, capsys):
    # a 2-step MTL Conv-4 on the tiny zips: the numbers mean nothing, the plumbing is what is tested
    import pandas as pd

    from ntk_bridge.train.loop import load_data, load_run_config

    root, run = _tiny_root(tmp_path), tmp_path / "run"
    assert main(["train", "--dataset", "omniglot", "--shots", "1", "--root", str(root), "--steps", "2",
                 "--run-dir", str(run), "--no-progress", "--set", "channels=4", "--set", "val_episodes=2",
                 "--set", "test_episodes=2", "--set", "eval_every=2", "--set", "checkpoint_every=2",
                 "--set", "train_query=4", "--set", "val_query=4", "--set", "test_query=4"]) == 0
    capsys.readouterr()
    cfg = load_run_config(run)
    data = load_data(cfg, splits=("train", "test"))
    enc = ls.load_encoder(run, data.train, data.test)
    assert enc.train.shape == (len(data.train.labels), 4) and enc.head.shape == (data.train.num_classes, 4)
    np.testing.assert_allclose(ls.encoder_table(enc, "mean-feature", data.train.labels, data.train.num_classes)[3],
                               enc.train[data.train.labels == 3].mean(axis=0), rtol=1e-12)
    out = tmp_path / "out"
    args = _kf_args(root, tmp_path, run)
    args[args.index("--labels") + 1] = "random-slots,global,encoding"
    assert main(args + ["--encoding", "head-row", "--trained", str(run)]) == 0
    table = pd.read_csv(out / "accuracy.csv")
    assert set(table["labels"]) == {"random-slots", "global", "encoding", "-"}
    trained = table[table["kernel"] == "trained"]
    assert set(trained["method"]) == {"conv4-mtl proto", "conv4-mtl logreg"} and (trained["episodes"] == 2).all()
    assert json.loads((out / "config.json").read_text())["encoding"] == "head-row"


def test_missing_trained_folder_is_refused_in_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    args = _kf_args(_tiny_root(tmp_path), tmp_path, missing)
    i = args.index("--encoder")
    args = args[:i] + args[i + 2:]
    args[args.index("--labels") + 1] = "random-slots"
    assert main(args + ["--trained", str(missing)]) == 2
    err = _one_line_error(capsys)
    assert f"--trained run folder {missing} does not exist" in err
    assert not (tmp_path / "out").exists()
