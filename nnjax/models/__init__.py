"""Flax modules grouped by family; every ``__call__`` takes ``(x, train: bool)``."""

from nnjax.models.actor_critic import ActorCritic
from nnjax.models.attention import MultiHeadAttention, multi_head_attention, scaled_dot_product_attention
from nnjax.models.cnn import MnistCNN, SimpleCNN
from nnjax.models.dynamic import DynamicClassifier, DynamicNetwork
from nnjax.models.flows import FlowVAE, NormalizingFlow, PlanarFlow, importance_weighted_bound, planar_flow
from nnjax.models.forecast import StockForecaster, TimeSeriesForecaster, TimeSeriesTransformer
from nnjax.models.fpn import FPN, ResNetFPN, upsample_nearest
from nnjax.models.gan import Discriminator, Generator, MLPCritic, MLPGenerator
from nnjax.models.graph import GAT, EdgeConv, EdgeConvNet, GATLayer, Graph, add_self_loops, segment_softmax
from nnjax.models.layers import BatchNorm, Conv2D, im2col_conv, max_pool_2x2
from nnjax.models.mlp import MLP, BackpropMLP
from nnjax.models.recurrent import LSTM, Bidirectional, LSTMForecaster, SimpleRNN
from nnjax.models.resmlp import DropoutMLP, ResMLP, ScratchBatchNorm, ScratchDropout
from nnjax.models.resnet import BasicBlock, Bottleneck, ResNet, resnet, resnet18, resnet50
from nnjax.models.spectral import SpectralNorm, spectral_normalize
from nnjax.models.text_classifiers import BagOfWords, SentimentLSTM
from nnjax.models.transformer import EncoderBlock, TransformerClassifier, TransformerEncoder, TransformerLM
from nnjax.models.unet import UNet

__all__ = [
    "ActorCritic",
    "BackpropMLP",
    "BagOfWords",
    "BasicBlock",
    "BatchNorm",
    "Bidirectional",
    "Bottleneck",
    "Conv2D",
    "Discriminator",
    "DropoutMLP",
    "DynamicClassifier",
    "DynamicNetwork",
    "EdgeConv",
    "EdgeConvNet",
    "EncoderBlock",
    "FPN",
    "FlowVAE",
    "GAT",
    "GATLayer",
    "Generator",
    "Graph",
    "LSTM",
    "LSTMForecaster",
    "MLP",
    "MLPCritic",
    "MLPGenerator",
    "MnistCNN",
    "MultiHeadAttention",
    "NormalizingFlow",
    "PlanarFlow",
    "ResMLP",
    "ResNet",
    "ResNetFPN",
    "ScratchBatchNorm",
    "ScratchDropout",
    "SentimentLSTM",
    "SimpleCNN",
    "SimpleRNN",
    "SpectralNorm",
    "StockForecaster",
    "TimeSeriesForecaster",
    "TimeSeriesTransformer",
    "TransformerClassifier",
    "TransformerEncoder",
    "TransformerLM",
    "UNet",
    "add_self_loops",
    "im2col_conv",
    "importance_weighted_bound",
    "max_pool_2x2",
    "multi_head_attention",
    "planar_flow",
    "resnet",
    "resnet18",
    "resnet50",
    "scaled_dot_product_attention",
    "segment_softmax",
    "spectral_normalize",
    "upsample_nearest",
]
