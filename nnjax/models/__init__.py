"""Flax modules grouped by family; every ``__call__`` takes ``(x, train: bool)``."""

from nnjax.models.cnn import MnistCNN
from nnjax.models.layers import max_pool_2x2
from nnjax.models.mlp import MLP

__all__ = ["MLP", "MnistCNN", "max_pool_2x2"]
