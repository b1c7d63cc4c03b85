"""Seed 002 slide 1: a 784-128-64-10 multi-layer perceptron (ReLU), softmax cross-entropy.

    python -m experiments.mlp_mnist --epochs 10
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli, losses
from nnjax.config import TrainConfig, option
from nnjax.data import load_dataset
from nnjax.models import MLP
from nnjax.tasks import fit


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """MLP 784-128-64-10 with ReLU on flattened digits; Adam 1e-3, batch 128."""

    epochs: int = 10
    hidden: tuple[int, ...] = option((128, 64), "hidden-layer widths")


def main(config: Config) -> dict:
    data = load_dataset(config.data, config.data_dir, config.download)
    model = MLP(features=(*config.hidden, data.num_classes))
    return fit(config, model, data, losses.classification, experiment="mlp_mnist", multi_seed=True).summary


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="mlp_mnist"))
