"""Episode and MTL-task samplers: shapes, disjointness, uniformity, seeding, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from ntk_bridge.data.sampler import Episodes, sample_episodes, sample_task_batch
from ntk_bridge.errors import BridgeError


def _labels(n_classes=10, per_class=20, offset=0, seed=0):
    y = np.repeat(np.arange(n_classes) + offset, per_class)
    return np.random.default_rng(seed).permutation(y)  # classes interleaved in the split


def test_episode_shapes_labels_and_disjointness():
    y = _labels()
    ep = sample_episodes(y, 5, 3, 4, 200, 0)
    assert isinstance(ep, Episodes)
    assert ep.classes.shape == (200, 5)
    assert ep.support_idx.shape == ep.support_labels.shape == (200, 15)
    assert ep.query_idx.shape == ep.query_labels.shape == (200, 20)
    for a in ep:
        assert a.dtype == np.int64
    np.testing.assert_array_equal(ep.support_labels[0], np.repeat(np.arange(5), 3))
    np.testing.assert_array_equal(ep.query_labels[7], np.repeat(np.arange(5), 4))
    # the image behind each index has the episode class of its label (class-major order)
    np.testing.assert_array_equal(y[ep.support_idx],
                                  np.take_along_axis(ep.classes, ep.support_labels, 1))
    np.testing.assert_array_equal(y[ep.query_idx],
                                  np.take_along_axis(ep.classes, ep.query_labels, 1))
    both = np.concatenate([ep.support_idx, ep.query_idx], axis=1)
    assert all(np.unique(row).size == row.size for row in both)  # support and query disjoint
    assert all(np.unique(row).size == 5 for row in ep.classes)


def test_seeded_and_generator_accepted():
    y = _labels()
    a = sample_episodes(y, 5, 1, 2, 50, 123)
    b = sample_episodes(y, 5, 1, 2, 50, np.random.default_rng(123))
    c = sample_episodes(y, 5, 1, 2, 50, 124)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.support_idx, c.support_idx)
    with pytest.raises(BridgeError, match="explicit seed"):
        sample_episodes(y, 5, 1, 2, 5, None)


def test_uniform_over_classes_and_over_support_images():
    """Each class is in an episode w.p. n_way/C; each image of a class is the support w.p. 1/count.

    Bounds: 5 binomial standard deviations, so a correct sampler fails with prob < 1e-5.
    """
    n_classes, per_class, n_ep = 8, 20, 4000
    y = _labels(n_classes, per_class)
    ep = sample_episodes(y, 4, 1, 19, n_ep, 7)
    freq = np.bincount(ep.classes.ravel(), minlength=n_classes)
    p = 4 / n_classes
    assert np.all(np.abs(freq - n_ep * p) < 5 * np.sqrt(n_ep * p * (1 - p)))
    # all 20 images of a chosen class are used (k+q = count), so only the support choice is
    # random: it must not favour low image indices or any position
    sup = np.bincount(ep.support_idx.ravel(), minlength=y.size)
    n_sup = freq[y]  # times each image's class was drawn
    q = 1 / per_class
    assert np.all(np.abs(sup - n_sup * q) < 5 * np.sqrt(n_sup * q * (1 - q)))
    # position of a class in the episode is uniform too
    first = np.bincount(ep.classes[:, 0], minlength=n_classes)
    assert np.all(np.abs(first - n_ep / n_classes) < 5 * np.sqrt(n_ep / n_classes))


def test_uniform_when_few_images_drawn_from_big_classes():
    """k + q = 9 of 100 images: the rejection path. Each image is drawn w.p. (3/6) * 9/100 per
    episode and is the support w.p. (3/6) * 1/100; bounds of 5 binomial standard deviations."""
    y = _labels(6, 100, seed=3)
    n_ep = 20000
    ep = sample_episodes(y, 3, 1, 8, n_ep, 11)
    both = np.concatenate([ep.support_idx, ep.query_idx], axis=1)
    assert np.all(np.diff(np.sort(both, axis=1), axis=1) > 0)
    for idx, p in ((both, 0.5 * 0.09), (ep.support_idx, 0.5 * 0.01)):
        freq = np.bincount(idx.ravel(), minlength=y.size)
        assert np.all(np.abs(freq - n_ep * p) < 5 * np.sqrt(n_ep * p * (1 - p)))


def test_many_episodes_large_split_chunks_correctly():
    y = _labels(64, 600, seed=1)
    ep = sample_episodes(y, 5, 5, 15, 3000, 0)
    assert ep.support_idx.shape == (3000, 25) and ep.query_idx.shape == (3000, 75)
    np.testing.assert_array_equal(y[ep.query_idx],
                                  np.take_along_axis(ep.classes, ep.query_labels, 1))
    both = np.sort(np.concatenate([ep.support_idx, ep.query_idx], axis=1), axis=1)
    assert np.all(np.diff(both, axis=1) > 0)


def test_errors_are_one_line_and_name_the_class():
    y = _labels(4, 10)
    with pytest.raises(BridgeError, match=r"the split has 4 classes but n_way=5") as err:
        sample_episodes(y, 5, 1, 1, 1, 0)
    assert "\n" not in str(err.value)
    y2 = np.concatenate([y, np.array([4, 4, 4])])
    with pytest.raises(BridgeError, match=r"class 4 \(Tagalog/character17\) has 3 images but "
                                          r"k_shot \+ q_query = 1 \+ 5 = 6 are needed"):
        sample_episodes(y2, 3, 1, 5, 1, 0, class_names=[f"x{i}" for i in range(4)]
                        + ["Tagalog/character17"])
    with pytest.raises(BridgeError, match="k_shot must be an integer >= 1"):
        sample_episodes(y, 2, 0, 1, 1, 0)
    with pytest.raises(BridgeError, match="1-d integer array"):
        sample_episodes(y.astype(float), 2, 1, 1, 1, 0)


def test_task_batch_keeps_global_class_ids():
    y = _labels(12, 7, offset=100)  # non-dense ids: returned as they are
    tb = sample_task_batch(y, 5, 6, 300, 3)
    assert tb.classes.shape == (300, 5) and tb.idx.shape == tb.labels.shape == (300, 30)
    assert tb.classes.min() >= 100 and tb.classes.max() <= 111
    np.testing.assert_array_equal(y[tb.idx], np.take_along_axis(tb.classes, tb.labels, 1))
    assert all(np.unique(row).size == 30 for row in tb.idx)
    head_bank = np.arange(112) * 10.0  # one row per global class
    np.testing.assert_array_equal(head_bank[tb.classes][:, 0], tb.classes[:, 0] * 10.0)
    with pytest.raises(BridgeError, match="has 7 images but n_per_class = 8"):
        sample_task_batch(y, 5, 8, 1, 0)
