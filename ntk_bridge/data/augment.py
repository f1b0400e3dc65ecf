"""MetaOptNet-style augmentation of uint8 batches as jit-able JAX functions.

``augment_batch(key, images)`` applies, independently to every image (one PRNG key each via
``jax.random.split`` + ``vmap``):

1. random crop with zero padding: pad ``pad`` zero pixels on every side, cut an HxW window at a
   uniform offset in ``0..2*pad`` (torchvision ``RandomCrop(size, padding=pad)``);
2. horizontal flip with probability 1/2;
3. colour jitter (torchvision ``ColorJitter(b, c, s)`` with b = c = s = ``jitter``), factors
   f ~ U[max(0, 1-jitter), 1+jitter], applied in the fixed order brightness, contrast, saturation
   (torchvision shuffles the order; we do not), on x in [0, 1], clipped to [0, 1] after each:
   brightness x*f; contrast (x - m)*f + m with m the mean grey level of the image;
   saturation g + f*(x - g) with g the grey image (0.299 R + 0.587 G + 0.114 B; a no-op for
   one channel);
4. normalisation (x - mean) / std per channel.

Inputs are uint8 (B, H, W, C); outputs float32 (B, H, W, C).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ntk_bridge.errors import BridgeError

__all__ = ["normalize", "augment_batch", "augment_image"]

_GREY = (0.299, 0.587, 0.114)


def _check_uint8(images, where: str) -> None:
    if images.dtype != jnp.uint8 or images.ndim != 4:
        raise BridgeError(f"{where} expects uint8 images (B, H, W, C), got {images.dtype} "
                          f"{tuple(images.shape)}; pass the split's raw images")


def normalize(images, mean, std):
    """uint8 (B, H, W, C) -> float32 ``(images / 255 - mean) / std`` (per channel)."""
    images = jnp.asarray(images)
    _check_uint8(images, "normalize")
    x = images.astype(jnp.float32) / 255.0
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x - mean) / std


def _grey(x):
    """(H, W, C) in [0, 1] -> (H, W, 1) luma (the image itself when C = 1)."""
    if x.shape[-1] == 1:
        return x
    w = jnp.asarray(_GREY, x.dtype)
    return jnp.sum(x * w, axis=-1, keepdims=True)


def augment_image(key, image, *, pad: int, flip: bool = True, jitter: float = 0.4):
    """One uint8 (H, W, C) image -> float32 (H, W, C) in [0, 1], augmented (steps 1-3)."""
    h, w, c = image.shape
    k_crop, k_flip, k_b, k_c, k_s = jax.random.split(key, 5)
    x = image.astype(jnp.float32) / 255.0
    if pad > 0:
        x = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        off = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
        x = jax.lax.dynamic_slice(x, (off[0], off[1], 0), (h, w, c))
    if flip:
        x = jnp.where(jax.random.bernoulli(k_flip), x[:, ::-1, :], x)
    if jitter > 0:
        lo, hi = max(0.0, 1.0 - jitter), 1.0 + jitter
        fb = jax.random.uniform(k_b, (), minval=lo, maxval=hi)
        fc = jax.random.uniform(k_c, (), minval=lo, maxval=hi)
        fs = jax.random.uniform(k_s, (), minval=lo, maxval=hi)
        x = jnp.clip(x * fb, 0.0, 1.0)
        m = jnp.mean(_grey(x))
        x = jnp.clip((x - m) * fc + m, 0.0, 1.0)
        if c > 1:
            g = _grey(x)
            x = jnp.clip(g + fs * (x - g), 0.0, 1.0)
    return x


@partial(jax.jit, static_argnames=("pad", "flip", "jitter"))
def _augment_batch(key, images, mean, std, pad: int, flip: bool, jitter: float):
    keys = jax.random.split(key, images.shape[0])
    x = jax.vmap(lambda k, im: augment_image(k, im, pad=pad, flip=flip, jitter=jitter))(keys, images)
    return (x - mean) / std


def augment_batch(key, images, *, pad: int, flip: bool = True, jitter: float = 0.4,
                  mean, std):
    """uint8 (B, H, W, C) -> float32 (B, H, W, C): crop/flip/jitter per image, then normalise.

    key: a JAX PRNG key; pad: zero padding of the random crop (4 for 32x32, 8 for 84x84);
    mean, std: per-channel, in [0, 1] units (see ``dataset_stats``). Jitted internally with
    ``pad``, ``flip``, ``jitter`` static; also safe to call inside an outer ``jax.jit``.
    """
    images = jnp.asarray(images)
    _check_uint8(images, "augment_batch")
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return _augment_batch(key, images, mean, std, int(pad), bool(flip), float(jitter))
