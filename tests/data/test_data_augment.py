"""MetaOptNet-style augmentation: each step checked against its definition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bridge.data import dataset_stats
from ntk_bridge.data.augment import augment_batch, normalize
from ntk_bridge.errors import BridgeError

MEAN, STD = dataset_stats("cifarfs")


def _imgs(b=16, h=10, w=10, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, c), dtype=np.uint8)


def test_normalize_matches_formula_and_stats():
    x = _imgs()
    want = (x / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(np.asarray(normalize(x, MEAN, STD)), want, rtol=1e-5, atol=1e-5)
    assert normalize(x, MEAN, STD).dtype == jnp.float32
    assert dataset_stats("miniimagenet")[0][0] == pytest.approx(120.39586422 / 255)
    assert len(dataset_stats("omniglot")[0]) == 1


def test_identity_when_everything_off():
    x = _imgs()
    out = augment_batch(jax.random.key(0), x, pad=0, flip=False, jitter=0.0, mean=MEAN, std=STD)
    np.testing.assert_allclose(np.asarray(out), np.asarray(normalize(x, MEAN, STD)), atol=1e-6)


def test_crop_is_a_window_of_the_zero_padded_image_and_offsets_vary():
    x = _imgs(b=64, seed=1)
    pad = 2
    out = np.asarray(augment_batch(jax.random.key(1), x, pad=pad, flip=False, jitter=0.0,
                                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    padded = np.pad(x / 255.0, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = []
    for i in range(x.shape[0]):
        hits = [(a, b) for a in range(2 * pad + 1) for b in range(2 * pad + 1)
                if np.allclose(out[i], padded[i, a:a + 10, b:b + 10], atol=1e-6)]
        assert hits, f"image {i} is not a crop of its padded input"
        offsets.append(hits[0])
    assert len(set(offsets)) > 10  # 25 possible offsets, 64 draws


def test_flip_is_horizontal_and_random_per_image():
    x = np.repeat(_imgs(b=1, seed=2), 64, axis=0)  # the same image 64 times
    out = np.asarray(augment_batch(jax.random.key(2), x, pad=0, flip=True, jitter=0.0,
                                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    same = [np.allclose(o, x[0] / 255.0, atol=1e-6) for o in out]
    flipped = [np.allclose(o, x[0, :, ::-1] / 255.0, atol=1e-6) for o in out]
    assert all(s or f for s, f in zip(same, flipped))
    assert 16 < sum(flipped) < 48  # Binomial(64, 1/2): mean 32, sd 4


def test_jitter_on_grey_image_is_brightness_only_within_range():
    # constant grey image: contrast and saturation leave it unchanged, brightness scales it
    v = 100
    x = np.full((256, 4, 4, 3), v, np.uint8)
    out = np.asarray(augment_batch(jax.random.key(3), x, pad=0, flip=False, jitter=0.4,
                                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    per_image = out.reshape(256, -1)
    np.testing.assert_allclose(per_image.min(1), per_image.max(1), atol=1e-6)
    f = per_image[:, 0] / (v / 255.0)
    assert f.min() >= 0.6 - 1e-5 and f.max() <= 1.4 + 1e-5
    assert f.min() < 0.7 and f.max() > 1.3  # spread over U[0.6, 1.4]


@pytest.mark.slow
def test_jitter_output_bounds_deterministic_and_jittable():
    x = _imgs(b=32, h=32, w=32, seed=4)
    key = jax.random.key(5)
    a = augment_batch(key, x, pad=4, mean=MEAN, std=STD)
    b = jax.jit(lambda k, im: augment_batch(k, im, pad=4, mean=MEAN, std=STD))(key, x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    c = augment_batch(jax.random.key(6), x, pad=4, mean=MEAN, std=STD)
    assert not np.allclose(np.asarray(a), np.asarray(c))
    lo = (0 - np.array(MEAN)) / np.array(STD)
    hi = (1 - np.array(MEAN)) / np.array(STD)
    arr = np.asarray(a)
    assert np.all(arr >= lo - 1e-5) and np.all(arr <= hi + 1e-5)
    assert a.shape == x.shape and a.dtype == jnp.float32


def test_one_channel_images_and_bad_dtype():
    x = _imgs(b=4, h=28, w=28, c=1)
    m, s = dataset_stats("omniglot")
    assert augment_batch(jax.random.key(0), x, pad=2, mean=m, std=s).shape == (4, 28, 28, 1)
    with pytest.raises(BridgeError, match="expects uint8 images"):
        augment_batch(jax.random.key(0), x.astype(np.float32), pad=2, mean=m, std=s)
