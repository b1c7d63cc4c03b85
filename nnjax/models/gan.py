"""GAN networks: the DCGAN generator and spectral-normed critic (seed 000 slide 9, NHWC) and the
small MLP generator/critic of the 1-D GAN (seed 003 slide 13).

The seed's ``Generator(latent_dim, channels)`` uses ``channels`` both as the base width and as the
number of image channels (a 64-channel image) and its ``Discriminator(channels)`` expects a
``channels``-channel input; here ``channels`` is the base width and ``image_channels`` the image's.
Every network takes ``train`` so one adversarial loop can drive them all: it switches BatchNorm to
batch statistics (generator) and writes the spectral-norm power-iteration vectors (critic).

The 4x4 stride-2 convolutions are written as one im2col matmul each (``down_conv``: space-to-depth
then a 2x2 convolution; ``up_conv``: a 3x3 convolution to the four output phases then
depth-to-space). They equal ``lax.conv_general_dilated`` / ``flax.linen.ConvTranspose`` with the
same parameters, but XLA:CPU compiles them ~3x faster than a 16-slice im2col and runs their
backward passes (and the gradient penalty's double backward) far faster than its native
(transposed) convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nnjax.models.layers import im2col_conv
from nnjax.models.spectral import SpectralNorm

# up_conv: for output phase a (row 2m + a) and input row m - 1 + u, the kernel row that connects
# them in flax's ConvTranspose(4x4, stride 2, padding 2) (PyTorch ConvTranspose2d(4, 2, 1) with the
# kernel flipped); 4 indexes an appended zero row (no connection).
_UP_TAPS_UxA = np.array([[0, 4], [2, 1], [4, 3]])


def down_conv(x_BxHxWxC: jax.Array, kernel_4x4xCxF: jax.Array) -> jax.Array:
    """4x4 convolution, stride 2, padding 1 (PyTorch ``Conv2d(C, F, 4, 2, 1)``, flax/XLA 'SAME' for
    even H, W): [B, H, W, C] -> [B, H/2, W/2, F].

    Pads by 1, folds each 2x2 block into channels ([B, H/2 + 1, W/2 + 1, 4C]) and applies the
    equivalent 2x2 stride-1 convolution.
    """
    b, h, w, c = x_BxHxWxC.shape
    if h % 2 or w % 2 or kernel_4x4xCxF.shape[:3] != (4, 4, c):
        raise ValueError(f"down_conv expects even H, W and a [4, 4, {c}, F] kernel, got {x_BxHxWxC.shape}, {kernel_4x4xCxF.shape}")
    f = kernel_4x4xCxF.shape[-1]
    xp = jnp.pad(x_BxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
    blocks = xp.reshape(b, h // 2 + 1, 2, w // 2 + 1, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2 + 1, w // 2 + 1, 4 * c)
    kernel_2x2x4CxF = kernel_4x4xCxF.reshape(2, 2, 2, 2, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, f)
    return im2col_conv(blocks, kernel_2x2x4CxF, (1, 1), "VALID")


def up_conv(x_BxHxWxC: jax.Array, kernel_4x4xCxF: jax.Array) -> jax.Array:
    """4x4 transposed convolution, stride 2: [B, H, W, C] -> [B, 2H, 2W, F], equal to
    ``flax.linen.ConvTranspose(F, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))`` (the seed's
    ``ConvTranspose2d(C, F, 4, 2, 1)`` up to a kernel flip).

    Output pixel (2m + a, 2n + b) sees input rows m - 1..m + 1 and columns n - 1..n + 1 only, so a
    3x3 convolution to 4F channels (one F-block per phase (a, b), zeros for unused taps) followed by
    depth-to-space computes it.
    """
    b, h, w, c = x_BxHxWxC.shape
    if kernel_4x4xCxF.shape[:3] != (4, 4, c):
        raise ValueError(f"up_conv expects a [4, 4, {c}, F] kernel, got {kernel_4x4xCxF.shape}")
    f = kernel_4x4xCxF.shape[-1]
    padded_5x5xCxF = jnp.pad(kernel_4x4xCxF, ((0, 1), (0, 1), (0, 0), (0, 0)))
    taps = padded_5x5xCxF[_UP_TAPS_UxA[:, None, :, None], _UP_TAPS_UxA[None, :, None, :]]  # [3, 3, 2, 2, C, F]
    kernel_3x3xCx4F = taps.transpose(0, 1, 4, 2, 3, 5).reshape(3, 3, c, 4 * f)
    y = im2col_conv(x_BxHxWxC, kernel_3x3xCx4F, (1, 1), "SAME")  # [B, H, W, 4F]
    return y.reshape(b, h, w, 2, 2, f).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, f)


class DownConv(nn.Module):
    """``down_conv`` with flax ``Conv`` parameters: 'kernel' [4, 4, C, features], 'bias' [features]."""

    features: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, x_BxHxWxC.shape[-1], self.features))
        return down_conv(x_BxHxWxC, kernel) + self.param("bias", nn.initializers.zeros_init(), (self.features,))


class UpConv(nn.Module):
    """``up_conv`` with flax ``ConvTranspose`` parameters: 'kernel' [4, 4, C, features], 'bias' [features]."""

    features: int

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, x_BxHxWxC.shape[-1], self.features))
        return up_conv(x_BxHxWxC, kernel) + self.param("bias", nn.initializers.zeros_init(), (self.features,))


class Generator(nn.Module):
    """z [B, latent_dim] -> images [B, 32, 32, image_channels] in [-1, 1].

    The seed's DCGAN generator: 4x4 transposed convolutions 1 -> 4 (valid) -> 8 -> 16 -> 32
    (stride 2) with widths channels * (8, 4, 2), each followed by BatchNorm and ReLU, and a last one
    to ``image_channels`` followed by tanh. The first, on a 1x1 input, is a Dense layer to
    4 * 4 * channels * 8 reshaped to [B, 4, 4, channels * 8] (the same linear map).
    """

    latent_dim: int = 100
    channels: int = 64
    image_channels: int = 1

    @nn.compact
    def __call__(self, z_BxL: jax.Array, train: bool = False) -> jax.Array:
        if z_BxL.ndim != 2 or z_BxL.shape[1] != self.latent_dim:
            raise ValueError(f"Generator expects z [B, {self.latent_dim}], got {z_BxL.shape}")
        x = nn.Dense(4 * 4 * self.channels * 8)(z_BxL).reshape(-1, 4, 4, self.channels * 8)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        for mult in (4, 2):
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(UpConv(self.channels * mult)(x)))
        return jnp.tanh(UpConv(self.image_channels)(x))


class Discriminator(nn.Module):
    """WGAN critic: images [B, 32, 32, C] -> one unbounded score per image [B] (no sigmoid).

    The seed's discriminator: spectral-normed 4x4 convolutions, stride 2 (32 -> 16 -> 8 -> 4), with
    widths channels * (2, 4, 8) and LeakyReLU(0.2), then a spectral-normed 4x4 valid convolution
    (a Dense layer on the flattened 4x4 map) to one score. No BatchNorm: the gradient penalty is
    defined per sample.
    """

    channels: int = 64
    n_power_iterations: int = 1

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        if x_BxHxWxC.ndim != 4 or x_BxHxWxC.shape[1:3] != (32, 32):
            raise ValueError(f"Discriminator expects images [B, 32, 32, C], got {x_BxHxWxC.shape}")
        x = x_BxHxWxC
        for mult in (2, 4, 8):
            x = SpectralNorm(DownConv(self.channels * mult), self.n_power_iterations)(x, update_stats=train)
            x = nn.leaky_relu(x, 0.2)
        x_BxK = x.reshape(x.shape[0], -1)
        return SpectralNorm(nn.Dense(1), self.n_power_iterations)(x_BxK, update_stats=train).reshape(-1)


class MLPGenerator(nn.Module):
    """z [B, L] -> samples [B, out_dim]: Dense+LeakyReLU(0.2) hidden layers, a linear output."""

    hidden: Sequence[int] = (32, 32)
    out_dim: int = 1

    @nn.compact
    def __call__(self, z_BxL: jax.Array, train: bool = False) -> jax.Array:
        del train
        x = z_BxL
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return nn.Dense(self.out_dim)(x)


class MLPCritic(nn.Module):
    """x [B, D] -> one unbounded score (a logit or a critic value) per sample [B]."""

    hidden: Sequence[int] = (32, 32)

    @nn.compact
    def __call__(self, x_BxD: jax.Array, train: bool = False) -> jax.Array:
        del train
        x = x_BxD
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return nn.Dense(1)(x).reshape(-1)
