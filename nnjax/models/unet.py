"""U-Net for binary segmentation with a boundary-refinement head (seed 002 slide 11).

The seed's ``SegmentationNetwork`` has four encoder blocks (conv3x3-BN-ReLU twice, at 64/128/256/512
channels) with 2x2 max pooling, a decoder "with skip connections" and a ``BoundaryRefinementModule``,
neither of which it defines. Here:

- encoder: ``ConvBlock`` at widths ``base * 2**i`` for i = 0..3, a 2x2 max pool between blocks (three
  pools, so H and W must be multiples of 8; the fourth block is the bottleneck at H/8 x W/8);
- decoder: three stages, each a learned 2x2 stride-2 transposed convolution (``UpConv2x2``, the
  "up-conv 2x2" of Ronneberger et al. 2015) halving the width, concatenation with the encoder features
  of the same resolution (the skip connection), and a ``ConvBlock``;
- ``BoundaryRefinement`` (see its docstring): a 1x1 conv gives coarse mask logits; a small residual
  conv block on [decoder features, coarse logits] adds a correction to them and predicts an auxiliary
  boundary-band logit map that the segmentation objective can supervise.

``UNet(...)(x_BxHxWxC, train)`` returns ``{'mask': [B, H, W, 1], 'boundary': [B, H, W, 1],
'coarse': [B, H, W, 1]}`` (all logits). Convolutions are ``nnjax.models.layers.Conv2D`` (im2col on
CPU); BatchNorm statistics live in ``batch_stats``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.errors import ShapeError
from nnjax.models.layers import Conv2D, max_pool_2x2

NUM_LEVELS = 4
DOWNSAMPLE = 2 ** (NUM_LEVELS - 1)


def flat_lecun_normal(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """LeCun normal for a kernel [..., C, F] (fan-in ``prod(shape[:-1])``, as flax computes it for convolutions),
    drawn as one [fan_in, F] matrix and reshaped: the same distribution as ``nn.initializers.lecun_normal()``,
    but XLA:CPU compiles the jitted U-Net init ~2.5x faster than with per-shape 4-D draws."""
    return nn.initializers.lecun_normal()(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


def _batch_norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


class ConvBlock(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) twice: [B, H, W, C] -> [B, H, W, features]."""

    features: int
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool) -> jax.Array:
        x = x_BxHxWxC
        for _ in range(2):
            x = Conv2D(self.features, (3, 3), use_bias=False, impl=self.conv_impl, kernel_init=flat_lecun_normal)(x)
            x = nn.relu(_batch_norm(train)(x))
        return x


class UpConv2x2(nn.Module):
    """2x2 transposed convolution with stride 2: [B, H, W, C] -> [B, 2H, 2W, features].

    The kernel windows do not overlap at stride 2, so output pixel (2i + a, 2j + b) is exactly
    ``x[i, j] @ kernel[a, b] + bias``: one matmul and a reshape, equal to
    ``lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), 'VALID') + bias`` (a spatially flipped kernel
    in lax's convention) and cheaper on CPU.
    """

    features: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        b, h, w, c = x_BxHxWxC.shape
        kernel_2x2xCxF = self.param("kernel", flat_lecun_normal, (2, 2, c, self.features))
        bias_F = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        y_BxHxWx2x2xF = jnp.einsum("bhwc,ijcf->bhwijf", x_BxHxWxC, kernel_2x2xCxF)
        y_BxHx2xWx2xF = y_BxHxWx2x2xF.transpose(0, 1, 3, 2, 4, 5)
        return y_BxHx2xWx2xF.reshape(b, 2 * h, 2 * w, self.features) + bias_F


class BoundaryRefinement(nn.Module):
    """The seed's undefined ``BoundaryRefinementModule``, as a residual refinement of the mask logits.

    From decoder features ``f`` [B, H, W, C]:

    - ``coarse = conv1x1(f)``: the U-Net's mask logits;
    - ``h = ReLU(BN(conv3x3(ReLU(BN(conv3x3([f, coarse]))))))`` with ``features`` channels: a small
      block that sees the coarse mask next to the features, i.e. where the current edge lies;
    - ``mask = coarse + conv1x1(h)``: a residual correction (its kernel starts at zero, so the refined
      logits start equal to the coarse ones and the block learns only a refinement);
    - ``boundary = conv1x1(h)``: logits of the boundary band (pixels whose 3x3 neighbourhood holds
      both classes, ``nnjax.losses.boundary_weights``); supervising it makes ``h`` an edge detector,
      which is what the correction is built from.

    Returns ``{'mask', 'boundary', 'coarse'}``, each [B, H, W, 1].
    """

    features: int
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, f_BxHxWxC: jax.Array, train: bool) -> dict[str, jax.Array]:
        coarse_BxHxWx1 = Conv2D(1, (1, 1), kernel_init=flat_lecun_normal, name="coarse")(f_BxHxWxC)
        h = jnp.concatenate([f_BxHxWxC, coarse_BxHxWx1], axis=-1)
        h = ConvBlock(self.features, self.conv_impl)(h, train)
        correction = Conv2D(1, (1, 1), kernel_init=nn.initializers.zeros_init(), name="correction")(h)
        boundary_BxHxWx1 = Conv2D(1, (1, 1), kernel_init=flat_lecun_normal, name="boundary")(h)
        return {"mask": coarse_BxHxWx1 + correction, "boundary": boundary_BxHxWx1, "coarse": coarse_BxHxWx1}


class UNet(nn.Module):
    """Four-level U-Net (widths ``base * 2**i``; the seed's 64/128/256/512 at ``base=64``) with a
    ``BoundaryRefinement`` head.

    ``__call__(x_BxHxWxC, train)`` needs H and W divisible by 8 (``ShapeError`` otherwise) and returns
    logits ``{'mask': [B, H, W, 1], 'boundary': [B, H, W, 1], 'coarse': [B, H, W, 1]}``;
    ``sigmoid(mask) > 0.5`` (``mask > 0``) is the predicted foreground. ``conv_impl`` is the 3x3
    convolutions' ``Conv2D.impl`` ('auto': im2col on CPU, XLA's convolution on accelerators).
    """

    base: int = 64
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        if x_BxHxWxC.ndim != 4 or x_BxHxWxC.shape[1] % DOWNSAMPLE or x_BxHxWxC.shape[2] % DOWNSAMPLE:
            raise ShapeError(
                f"UNet expects images [B, H, W, C] with H and W divisible by {DOWNSAMPLE} "
                f"({NUM_LEVELS - 1} 2x2 poolings), got shape {x_BxHxWxC.shape}"
            )
        if self.base < 1:
            raise ValueError(f"UNet base width must be >= 1, got {self.base}")
        widths = [self.base * 2**i for i in range(NUM_LEVELS)]
        skips = []
        x = x_BxHxWxC
        for level, width in enumerate(widths):
            if level:
                x = max_pool_2x2(x)
            x = ConvBlock(width, self.conv_impl, name=f"encoder_{level}")(x, train)
            skips.append(x)
        for level in reversed(range(NUM_LEVELS - 1)):
            x = UpConv2x2(widths[level], name=f"up_{level}")(x)
            x = jnp.concatenate([skips[level], x], axis=-1)
            x = ConvBlock(widths[level], self.conv_impl, name=f"decoder_{level}")(x, train)
        return BoundaryRefinement(self.base, self.conv_impl, name="refine")(x, train)
