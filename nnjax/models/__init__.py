"""Flax modules grouped by family; every ``__call__`` takes ``(x, train: bool)``."""

from nnjax.models.cnn import MnistCNN
from nnjax.models.forecast import StockForecaster
from nnjax.models.layers import Conv2D, im2col_conv, max_pool_2x2
from nnjax.models.mlp import MLP, BackpropMLP
from nnjax.models.recurrent import LSTM, Bidirectional, LSTMForecaster, SimpleRNN
from nnjax.models.resmlp import DropoutMLP, ResMLP, ScratchBatchNorm, ScratchDropout
from nnjax.models.text import BagOfWords, SentimentLSTM
from nnjax.models.transformer import TransformerClassifier, TransformerEncoder

__all__ = [
    "BackpropMLP",
    "BagOfWords",
    "Bidirectional",
    "Conv2D",
    "DropoutMLP",
    "LSTM",
    "LSTMForecaster",
    "MLP",
    "MnistCNN",
    "ResMLP",
    "ScratchBatchNorm",
    "ScratchDropout",
    "SentimentLSTM",
    "SimpleRNN",
    "StockForecaster",
    "TransformerClassifier",
    "TransformerEncoder",
    "im2col_conv",
    "max_pool_2x2",
]
