"""Convolutional image classifiers."""

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
