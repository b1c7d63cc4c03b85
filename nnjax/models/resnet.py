"""ResNet-18/50 (torchvision's v1.5 layout) and small configurable ResNets, in flax linen.

Module and parameter names follow torchvision's ``state_dict`` so the mapping reads off directly
(``nnjax.models.torch_import`` converts one):

    torchvision                      nnjax (params / batch_stats)
    conv1.weight [O, I, Kh, Kw]      conv1/kernel [Kh, Kw, I, O]
    bn1.weight, bn1.bias             bn1/scale, bn1/bias
    bn1.running_mean, running_var    batch_stats bn1/mean, bn1/var
    layer2.0.conv1.weight            layer2_0/conv1/kernel
    layer2.0.downsample.0/.1         layer2_0/downsample_conv, layer2_0/downsample_bn
    fc.weight [N, D], fc.bias        fc/kernel [D, N], fc/bias

BatchNorm uses torch's epsilon 1e-5 and momentum 0.1 (flax ``momentum=0.9`` is the weight of the old
statistic). One difference in training remains: torch's running variance averages the *unbiased*
batch variance, flax's the biased one (a factor n/(n-1) on each update); evaluation is identical.

Convolutions are ``nnjax.models.layers.Conv2D`` on explicitly padded inputs (torch's symmetric
padding: 'SAME' would pad a stride-2 7x7 conv asymmetrically), so they run as im2col matmuls on CPU
and XLA convolutions on GPU/TPU (``conv_impl``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.errors import ShapeError
from nnjax.models.layers import CONV_IMPLS, Conv2D

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
# Stage sizes and block of torchvision's named ResNets (ImageNet stem, widths 64..512).
VARIANTS = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
    "resnet152": ((3, 8, 36, 3), "bottleneck"),
}
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d eps
BN_MOMENTUM = 0.9  # flax's weight of the running statistic == torch momentum 0.1


def conv_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """torchvision's conv init, ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``: N(0, 2 / (Kh·Kw·F)).

    Drawn as a flat vector and reshaped: XLA:CPU compiles a 4-D random draw several times slower.
    """
    kh, kw, _, f = shape
    std = (2.0 / (kh * kw * f)) ** 0.5
    return (std * jax.random.normal(key, (math.prod(shape),), dtype)).reshape(shape)


def fc_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """torch ``nn.Linear``'s default weight init for a [D, N] kernel: uniform(±1/sqrt(D)), drawn flat."""
    bound = 1.0 / shape[0] ** 0.5
    return jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound).reshape(shape)


def max_pool_3x3(x_BxHxWxC: jax.Array) -> jax.Array:
    """torch's ``MaxPool2d(3, stride=2, padding=1)``: -inf padding -> [B, (H-1)//2 + 1, (W-1)//2 + 1, C].

    The maximum of nine strided slices of the padded input: same values as
    ``nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))`` with a backward pass that avoids XLA:CPU's
    slow select-and-scatter.
    """
    _, h, w, _ = x_BxHxWxC.shape
    x = jnp.pad(x_BxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    windows = [x[:, i : i + 2 * oh - 1 : 2, j : j + 2 * ow - 1 : 2] for i in range(3) for j in range(3)]
    return functools.reduce(jnp.maximum, windows)


def conv_bn(features: int, kernel: int, stride: int, impl: str, conv_name: str, bn_name: str, train: bool):
    """``x -> BatchNorm(Conv(x))``: a bias-free ``kernel``x``kernel`` conv with torch's symmetric zero
    padding ``kernel // 2`` and stride ``stride``, then BatchNorm; call inside a compact method."""
    conv = Conv2D(
        features, (kernel, kernel), (stride, stride), padding="VALID", use_bias=False, impl=impl,
        kernel_init=conv_init, name=conv_name,
    )
    norm = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=bn_name)
    p = kernel // 2

    def apply(x_BxHxWxC: jax.Array) -> jax.Array:
        return norm(conv(jnp.pad(x_BxHxWxC, ((0, 0), (p, p), (p, p), (0, 0))) if p else x_BxHxWxC))

    return apply


class BasicBlock(nn.Module):
    """ResNet-18/34 block: relu(bn2(conv2 3x3(relu(bn1(conv1 3x3/s(x))))) + shortcut(x)), ``features`` out.

    The shortcut is a 1x1/s conv + BN ('downsample_conv', 'downsample_bn') when the stride or the
    width changes, else the identity.
    """

    features: int
    stride: int = 1
    conv_impl: str = "auto"
    expansion = 1

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        """[B, H, W, C] -> [B, (H-1)//stride + 1, (W-1)//stride + 1, features]."""
        y = nn.relu(conv_bn(self.features, 3, self.stride, self.conv_impl, "conv1", "bn1", train)(x_BxHxWxC))
        y = conv_bn(self.features, 3, 1, self.conv_impl, "conv2", "bn2", train)(y)
        return nn.relu(y + _shortcut(x_BxHxWxC, self.features, self.stride, self.conv_impl, train))


class Bottleneck(nn.Module):
    """ResNet-50+ block (torchvision v1.5: the stride sits on the 3x3 conv):
    1x1 (features) -> 3x3/s (features) -> 1x1 (4 * features), BN after each, relu, + shortcut."""

    features: int
    stride: int = 1
    conv_impl: str = "auto"
    expansion = 4

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        """[B, H, W, C] -> [B, (H-1)//stride + 1, (W-1)//stride + 1, 4 * features]."""
        out = self.features * self.expansion
        y = nn.relu(conv_bn(self.features, 1, 1, self.conv_impl, "conv1", "bn1", train)(x_BxHxWxC))
        y = nn.relu(conv_bn(self.features, 3, self.stride, self.conv_impl, "conv2", "bn2", train)(y))
        y = conv_bn(out, 1, 1, self.conv_impl, "conv3", "bn3", train)(y)
        return nn.relu(y + _shortcut(x_BxHxWxC, out, self.stride, self.conv_impl, train))


def _shortcut(x_BxHxWxC: jax.Array, features: int, stride: int, impl: str, train: bool) -> jax.Array:
    """The identity, or torchvision's ``downsample`` (1x1/stride conv + BN) when the shape changes."""
    if stride == 1 and x_BxHxWxC.shape[-1] == features:
        return x_BxHxWxC
    return conv_bn(features, 1, stride, impl, "downsample_conv", "downsample_bn", train)(x_BxHxWxC)


_BLOCK_MODULES = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet: stem -> stages of residual blocks -> global average pool -> fc (logits).

    ``stage_sizes`` blocks per stage with widths ``widths`` (the first stage keeps the resolution,
    each later one halves it with its first block); ``block`` is 'basic' (ResNet-18/34) or
    'bottleneck' (ResNet-50+, output width 4x). ``stem`` 'imagenet' is torchvision's 7x7/2 conv
    (``stem_width``) + BN + relu + 3x3/2 max pool (H/4 before the stages); 'cifar' is a 3x3/1
    conv + BN + relu without pooling, for small images.

    ``frozen_backbone=True`` is the transfer-learning mode (seed 004 slide 13): everything before
    ``fc`` runs as in evaluation (BatchNorm uses, and never updates, its running statistics) and
    its output is wrapped in ``stop_gradient``, so only ``fc`` receives gradients and training
    leaves the backbone's ``params`` and ``batch_stats`` bit-identical. Pair it with
    ``nnjax.optim.freeze`` so that weight decay or momentum cannot move the backbone either.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    stem_width: int = 64
    num_classes: int = 1000
    frozen_backbone: bool = False
    conv_impl: str = "auto"

    def _check(self, x_BxHxWxC: jax.Array) -> None:
        if self.block not in BLOCKS or self.stem not in STEMS or self.conv_impl not in CONV_IMPLS:
            raise ValueError(
                f"ResNet: block must be one of {BLOCKS}, stem one of {STEMS}, conv_impl one of {CONV_IMPLS}; "
                f"got {self.block!r}, {self.stem!r}, {self.conv_impl!r}"
            )
        if len(self.stage_sizes) != len(self.widths) or not self.stage_sizes or min(self.stage_sizes) < 1:
            raise ValueError(
                f"ResNet: stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} must be "
                "non-empty, of equal length, with >= 1 block per stage"
            )
        if x_BxHxWxC.ndim != 4:
            raise ShapeError(f"ResNet expects images [batch, height, width, channels], got shape {x_BxHxWxC.shape}")

    @nn.compact
    def __call__(
        self, x_BxHxWxC: jax.Array, train: bool = False, return_stages: bool = False
    ) -> jax.Array | list[jax.Array]:
        """Images [B, H, W, C] -> logits [B, num_classes].

        With ``return_stages=True``: the output of every stage instead, [C2, C3, C4, C5] for four
        stages (Ci has stride 2^i with the ImageNet stem: [B, ~H/4, ~W/4, widths[0] * expansion],
        ...), for a feature pyramid; ``fc`` is then neither created nor applied.
        """
        self._check(x_BxHxWxC)
        train = train and not self.frozen_backbone
        if self.stem == "imagenet":
            x = nn.relu(conv_bn(self.stem_width, 7, 2, self.conv_impl, "conv1", "bn1", train)(x_BxHxWxC))
            x = max_pool_3x3(x)
        else:
            x = nn.relu(conv_bn(self.stem_width, 3, 1, self.conv_impl, "conv1", "bn1", train)(x_BxHxWxC))
        block_cls = _BLOCK_MODULES[self.block]
        stages = []
        for i, (size, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for j in range(size):
                stride = 2 if i > 0 and j == 0 else 1
                x = block_cls(width, stride, self.conv_impl, name=f"layer{i + 1}_{j}")(x, train=train)
            stages.append(x)
        if return_stages:
            return stages
        features_BxD = jnp.mean(x, axis=(1, 2))
        if self.frozen_backbone:
            features_BxD = jax.lax.stop_gradient(features_BxD)
        return nn.Dense(self.num_classes, kernel_init=fc_init, name="fc")(features_BxD)


def resnet(variant: str, num_classes: int = 1000, **kwargs) -> ResNet:
    """torchvision's named ResNet (``VARIANTS``: 'resnet18', 'resnet50', ...) as an nnjax ``ResNet``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    stage_sizes, block = VARIANTS[variant]
    return ResNet(stage_sizes=stage_sizes, block=block, num_classes=num_classes, **kwargs)


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2], widths 64..512, ImageNet stem (11,689,512 params at 1000 classes)."""
    return resnet("resnet18", num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 v1.5: bottleneck blocks [3, 4, 6, 3], ImageNet stem (25,557,032 params at 1000 classes)."""
    return resnet("resnet50", num_classes, **kwargs)
