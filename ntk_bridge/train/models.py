"""Backbones in flax linen: Conv-4 and ResNet-12 with DropBlock.

Both map images ``(N, H, W, C)`` float32 (already normalised) to features ``(N, D)``.
Batch norm runs in train mode (batch statistics, running averages updated in the mutable
``batch_stats`` collection) when ``train=True`` and uses the running averages when
``train=False`` (evaluation). DropBlock and dropout draw from the ``"dropout"`` RNG stream and
are the identity when ``train=False``.

``drop_scale`` (a scalar in [0, 1], may be traced) multiplies the DropBlock rate of this forward
pass: the paper's MTL ramps it linearly from 0 to 1 over its first 40,000 forward passes
(authors' ``models/resnet.py:161``; :func:`ntk_bridge.train.algorithms.dropblock_scale`).
Plain dropout in ResNet-12's first two blocks (``dropout``, authors' ``models/resnet.py:158-165,
223-224``) is not ramped.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntk_bridge.errors import BridgeError

BN_MOMENTUM = 0.9  # running = momentum * running + (1 - momentum) * batch (PyTorch's 0.1)
BN_EPS = 1e-5


def drop_block(key: jax.Array, x: jax.Array, drop_rate: float, block_size: int) -> jax.Array:
    """DropBlock (Ghiasi et al., 2018) on ``x`` (N, H, W, C).

    Block seeds are drawn with probability
    ``gamma = drop_rate / b^2 * H W / ((H - b + 1)(W - b + 1))`` on the valid positions, each
    seed zeroes a ``b x b`` square (about ``drop_rate`` of the units in all), and the kept activations are rescaled by
    ``numel / kept`` so the expected sum is unchanged. ``b`` is clipped to the feature-map size.
    """
    n, h, w, c = x.shape
    b = int(min(block_size, h, w))
    gamma = drop_rate / (b * b) * (h * w) / ((h - b + 1) * (w - b + 1))
    centres = jax.random.bernoulli(key, gamma, (n, h - b + 1, w - b + 1, c)).astype(x.dtype)
    # a block covers the b x b square whose top-left corner is its (valid) position, so a
    # pixel is dropped if any corner within b - 1 above/left of it fired: pad then max-pool
    centres = jnp.pad(centres, ((0, 0), (b - 1, b - 1), (b - 1, b - 1), (0, 0)))
    dropped = jax.lax.reduce_window(centres, 0.0, jax.lax.max, (1, b, b, 1), (1, 1, 1, 1), "VALID")
    keep = 1.0 - dropped
    scale = keep.size / jnp.maximum(keep.sum(), 1.0)
    return x * keep * scale


class Conv4(nn.Module):
    """Four blocks of conv3x3(``channels``) -> BN -> ReLU -> 2x2 max-pool, then flatten.

    On 28x28 Omniglot the map is 1x1 after four pools, so the feature is ``channels``-d;
    on 84x84 it is 5x5 x ``channels``.
    """

    channels: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_scale: jax.Array | float = 1.0) -> jax.Array:
        del drop_scale  # no DropBlock in Conv-4; the argument keeps one call signature for both backbones
        for _ in range(4):
            x = nn.Conv(self.channels, (3, 3), padding="SAME")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS)(x)
            x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return x.reshape(x.shape[0], -1)


class ResBlock(nn.Module):
    """Three conv3x3 + BN (+ LeakyReLU(0.1) after the first two), a 1x1 conv + BN shortcut,
    add, LeakyReLU(0.1), 2x2 max-pool, then DropBlock at rate ``drop_rate * drop_scale`` if
    ``drop_rate > 0``, or plain (element-wise, inverted) dropout at rate ``dropout`` if
    ``dropout > 0``."""

    channels: int
    drop_rate: float = 0.0
    block_size: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_scale: jax.Array | float = 1.0) -> jax.Array:
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS)
        shortcut = bn()(nn.Conv(self.channels, (1, 1), use_bias=False)(x))
        y = x
        for i in range(3):
            y = bn()(nn.Conv(self.channels, (3, 3), padding="SAME", use_bias=False)(y))
            if i < 2:
                y = nn.leaky_relu(y, 0.1)
        y = nn.leaky_relu(y + shortcut, 0.1)
        y = nn.max_pool(y, (2, 2), strides=(2, 2))
        if train and self.drop_rate > 0:
            y = drop_block(self.make_rng("dropout"), y, self.drop_rate * drop_scale, self.block_size)
        if train and self.dropout > 0:
            y = nn.Dropout(self.dropout, deterministic=False)(y)
        return y


class ResNet12(nn.Module):
    """ResNet-12: blocks of 64-160-320-640 channels, DropBlock (rate ``drop_rate``, times
    ``drop_scale``) in the last two, plain dropout (rate ``dropout``) in the first two, global
    average pool to a 640-d feature (``channels[-1]``)."""

    channels: Sequence[int] = (64, 160, 320, 640)
    drop_rate: float = 0.1
    block_size: int = 5
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_scale: jax.Array | float = 1.0) -> jax.Array:
        for i, ch in enumerate(self.channels):
            last_two = i >= len(self.channels) - 2
            block = (ResBlock(ch, self.drop_rate, self.block_size) if last_two
                     else ResBlock(ch, 0.0, self.block_size, dropout=self.dropout))
            x = block(x, train, drop_scale)
        return x.mean(axis=(1, 2))


BACKBONES = ("conv4", "resnet12")


def build_backbone(name: str, *, channels: Sequence[int] | int | None = None,
                   drop_rate: float = 0.1, block_size: int = 5, dropout: float = 0.0) -> nn.Module:
    """The backbone called ``name`` (``conv4`` or ``resnet12``); ``channels`` overrides the
    width (an int for Conv-4, four ints for ResNet-12); ``drop_rate`` / ``block_size`` /
    ``dropout`` are ResNet-12's (Conv-4 has neither DropBlock nor dropout)."""
    if name == "conv4":
        if channels is None:
            return Conv4()
        ch = channels if isinstance(channels, int) else int(list(channels)[0])
        return Conv4(channels=ch)
    if name == "resnet12":
        if channels is None:
            return ResNet12(drop_rate=drop_rate, block_size=block_size, dropout=dropout)
        chs = [channels] * 4 if isinstance(channels, int) else [int(c) for c in channels]
        if len(chs) != 4:
            raise BridgeError(f"resnet12 needs 4 channel widths, got {chs}; give e.g. [64, 160, 320, 640]")
        return ResNet12(channels=tuple(chs), drop_rate=drop_rate, block_size=block_size, dropout=dropout)
    raise BridgeError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
