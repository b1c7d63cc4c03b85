"""Seed 003 slide 14: the Keras MNIST CNN, trained with Adam for 5 epochs on 80 % of the training
split (20 % validation), then evaluated on the test split.

    python -m experiments.mnist_cnn                       # offline real digits (auto)
    python -m experiments.mnist_cnn --data fashion_mnist  # 70,000 Fashion-MNIST images
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli, losses
from nnjax.config import TrainConfig, option
from nnjax.data import load_dataset
from nnjax.models import MnistCNN
from nnjax.tasks import fit


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """Conv(32, 3x3) -> MaxPool 2x2 -> Dense 128 -> Dense 10 on digits; Adam 1e-3, 5 epochs, batch 128."""

    conv_features: int = option(32, "filters of the 3x3 convolution")
    hidden: int = option(128, "units of the dense hidden layer")


def main(config: Config) -> dict:
    data = load_dataset(config.data, config.data_dir, config.download)
    model = MnistCNN(num_classes=data.num_classes, conv_features=config.conv_features, hidden=config.hidden)
    return fit(config, model, data, losses.classification, experiment="mnist_cnn", multi_seed=True).summary


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="mnist_cnn"))
