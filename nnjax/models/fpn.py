"""Feature Pyramid Network (seed 000 slide 7, torchvision's ``FeaturePyramidNetwork`` without extra blocks).

For backbone maps C_1..C_n (fine to coarse): lateral 1x1 convs ``inner_i`` bring each to
``out_channels``; a top-down pass adds the nearest-neighbour upsampled coarser merge to each
lateral (upsampled to the lateral's exact size, so odd sizes work); a 3x3 conv ``layer_i``
smooths every merge into P_i of shape [B, H_i, W_i, out_channels].
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nnjax.models.layers import Conv2D
from nnjax.models.resnet import ResNet


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output position of a nearest resize, int32 [out_size] (host numpy).

    torch's ``F.interpolate(mode='nearest', size=...)`` formula in float32,
    ``min(floor(i * float32(in / out)), in - 1)``, bit for bit: it equals the exact
    ``floor(i * in / out)`` at small sizes but not always (e.g. 26 -> 44), and FPN weights trained
    in torch saw torch's indices.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int32)
    return np.minimum(src, in_size - 1)


def upsample_nearest(x_BxHxWxC: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour resize of [B, H, W, C] to [B, size[0], size[1], C] (2x is plain repetition)."""
    _, h, w, _ = x_BxHxWxC.shape
    rows = jnp.take(x_BxHxWxC, nearest_indices(h, size[0]), axis=1)
    return jnp.take(rows, nearest_indices(w, size[1]), axis=2)


class FPN(nn.Module):
    """Maps [C_1, ..., C_n] (each [B, H_i, W_i, D_i], H_i >= H_{i+1}) to [P_1, ..., P_n], each [B, H_i, W_i, out_channels]."""

    out_channels: int = 256
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
        """Lateral 1x1 convs, nearest top-down merges, 3x3 output convs; see the module docstring."""
        if not features:
            raise ValueError("FPN needs at least one feature map")
        laterals = [
            Conv2D(self.out_channels, (1, 1), impl=self.conv_impl, name=f"inner_{i}")(c)
            for i, c in enumerate(features)
        ]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + upsample_nearest(merged[0], lateral.shape[1:3]))
        return [
            Conv2D(self.out_channels, (3, 3), padding="SAME", impl=self.conv_impl, name=f"layer_{i}")(m)
            for i, m in enumerate(merged)
        ]


class ResNetFPN(nn.Module):
    """A ResNet backbone's stage outputs (C2..C5 for four stages) through an ``FPN``: images -> [P2, ..., P5]."""

    backbone: ResNet
    out_channels: int = 256

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> list[jax.Array]:
        """Images [B, H, W, C] -> one [B, H_i, W_i, out_channels] map per backbone stage, finest first."""
        stages = self.backbone(x_BxHxWxC, train=train, return_stages=True)
        return FPN(self.out_channels, self.backbone.conv_impl, name="fpn")(stages)
