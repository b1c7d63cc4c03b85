"""Convolutional image classifiers: the Keras MNIST CNN (seed 003 slide 14) and SimpleCNN (seed 004 slide 11)."""

from __future__ import annotations

import flax.linen as nn
import jax

from nnjax.errors import ShapeError
from nnjax.models.layers import Conv2D, max_pool_2x2


class MnistCNN(nn.Module):
    """Seed 003 slide 14: Conv(32, 3x3, relu, VALID) -> MaxPool 2x2 -> Flatten -> Dense 128 relu -> Dense.

    Returns logits (the seed's softmax lives in the loss, where it is numerically stable).
    """

    num_classes: int = 10
    conv_features: int = 32
    hidden: int = 128

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        """Images [B, H, W, C] (H, W >= 4) -> logits [B, num_classes]."""
        del train
        if x_BxHxWxC.ndim != 4 or min(x_BxHxWxC.shape[1:3]) < 4:
            raise ShapeError(f"MnistCNN expects images [batch, height>=4, width>=4, channels], got {x_BxHxWxC.shape}")
        # relu(max_pool(conv)) == max_pool(relu(conv)); pooling first runs relu on 4x fewer values.
        x = nn.relu(max_pool_2x2(Conv2D(self.conv_features, (3, 3), padding="VALID", name="conv")(x_BxHxWxC)))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(self.num_classes, name="logits")(x)


class SimpleCNN(nn.Module):
    """Seed 004 slide 11: Conv(16, 3x3, SAME) -> ReLU -> MaxPool 2x2 -> Conv(32, 3x3, SAME) -> ReLU ->
    MaxPool 2x2 -> Flatten -> Dense(num_classes).

    ``features`` are the widths of the conv -> ReLU -> pool blocks (seed: 16, 32). Any H, W divisible
    by 2**len(features) (4 for the seed) works: the flatten size is ``(H/4) * (W/4) * 32``, derived
    from the input (the seed hard-codes ``32 * 8 * 8`` for 32x32 CIFAR-10 images, where this model
    matches it). Returns logits. Flattening is in NHWC order, so porting the seed's PyTorch ``fc``
    weights (NCHW order) would need a permutation of its input axis; every other parameter maps one
    to one (kernels transposed OIHW -> HWIO).
    """

    num_classes: int = 10
    features: tuple[int, ...] = (16, 32)

    @nn.compact
    def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
        """Images [B, H, W, C] (H, W positive multiples of 2**len(features)) -> logits [B, num_classes]."""
        del train
        factor = 2 ** len(self.features)
        shape = x_BxHxWxC.shape
        if x_BxHxWxC.ndim != 4 or min(shape[1:3]) < factor or shape[1] % factor or shape[2] % factor:
            raise ShapeError(
                f"SimpleCNN expects images [batch, height, width, channels] with height and width positive "
                f"multiples of {factor} ({len(self.features)} 2x2 poolings), got {shape}"
            )
        x = x_BxHxWxC
        for i, features in enumerate(self.features):
            # relu(max_pool(conv)) == max_pool(relu(conv)); pooling first runs relu on 4x fewer values.
            x = nn.relu(max_pool_2x2(Conv2D(features, (3, 3), padding="SAME", name=f"conv{i + 1}")(x)))
        x_BxF = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, name="fc")(x_BxF)
