"""Multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Flatten, then Dense layers of ``features`` with ``activation`` between them (logits out).

    Seed 002 slide 1 uses ``MLP(features=(128, 64, 10))`` on 784-pixel digits.
    """

    features: Sequence[int] = (128, 64, 10)
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ...] -> logits [B, features[-1]]."""
        del train
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"dense{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x
