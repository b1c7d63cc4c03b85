"""Flax modules grouped by family; every ``__call__`` takes ``(x, train: bool)``."""

from nnjax.models.attention import MultiHeadAttention, multi_head_attention, scaled_dot_product_attention
from nnjax.models.cnn import MnistCNN, SimpleCNN
from nnjax.models.dynamic import DynamicClassifier, DynamicNetwork
from nnjax.models.flows import FlowVAE, NormalizingFlow, PlanarFlow, importance_weighted_bound, planar_flow
from nnjax.models.forecast import StockForecaster, TimeSeriesForecaster, TimeSeriesTransformer
from nnjax.models.layers import Conv2D, im2col_conv, max_pool_2x2
from nnjax.models.mlp import MLP, BackpropMLP
from nnjax.models.recurrent import LSTM, Bidirectional, LSTMForecaster, SimpleRNN
from nnjax.models.resmlp import DropoutMLP, ResMLP, ScratchBatchNorm, ScratchDropout
from nnjax.models.text import BagOfWords, SentimentLSTM
from nnjax.models.transformer import EncoderBlock, TransformerClassifier, TransformerEncoder, TransformerLM

__all__ = [
    "BackpropMLP",
    "BagOfWords",
    "Bidirectional",
    "Conv2D",
    "DropoutMLP",
    "DynamicClassifier",
    "DynamicNetwork",
    "EncoderBlock",
    "FlowVAE",
    "LSTM",
    "LSTMForecaster",
    "MLP",
    "MnistCNN",
    "MultiHeadAttention",
    "NormalizingFlow",
    "PlanarFlow",
    "ResMLP",
    "ScratchBatchNorm",
    "ScratchDropout",
    "SentimentLSTM",
    "SimpleCNN",
    "SimpleRNN",
    "StockForecaster",
    "TimeSeriesForecaster",
    "TimeSeriesTransformer",
    "TransformerClassifier",
    "TransformerEncoder",
    "TransformerLM",
    "im2col_conv",
    "importance_weighted_bound",
    "max_pool_2x2",
    "multi_head_attention",
    "planar_flow",
    "scaled_dot_product_attention",
]
