"""Flax modules grouped by family; every ``__call__`` takes ``(x, train: bool)``."""

from nnjax.models.cnn import MnistCNN
from nnjax.models.layers import Conv2D, im2col_conv, max_pool_2x2
from nnjax.models.mlp import MLP, BackpropMLP
from nnjax.models.recurrent import LSTM, Bidirectional, LSTMForecaster, SimpleRNN
from nnjax.models.resmlp import DropoutMLP, ResMLP, ScratchBatchNorm, ScratchDropout

__all__ = [
    "LSTM",
    "MLP",
    "BackpropMLP",
    "Bidirectional",
    "Conv2D",
    "DropoutMLP",
    "LSTMForecaster",
    "MnistCNN",
    "ResMLP",
    "ScratchBatchNorm",
    "ScratchDropout",
    "SimpleRNN",
    "im2col_conv",
    "max_pool_2x2",
]
