"""Seed 004 slide 11: the SimpleCNN (Conv 16 -> pool -> Conv 32 -> pool -> Dense 10) trained on
CIFAR-10 with Adam 1e-3, batch 64, for a few epochs.

    python -m experiments.cifar_cnn                      # CIFAR-10 from tensorflow-datasets
    python -m experiments.cifar_cnn --download           # download and prepare it first (network)
    python -m experiments.cifar_cnn --data mnist5k       # the same architecture offline (28x28x1)

CIFAR-10 is read with ``download=False`` from ``--data-dir`` / ``$TFDS_DATA_DIR`` /
``~/tensorflow_datasets``; when it is not prepared there the run stops at once (exit code 2) with
a message saying how to prepare it. SimpleCNN derives its flatten size from the input, so any
data set whose images are multiples of 4 pixels wide and high trains the same network.
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli, losses
from nnjax.config import TrainConfig
from nnjax.data import load_dataset
from nnjax.errors import DataUnavailableError
from nnjax.models.cnn import SimpleCNN
from nnjax.tasks import fit


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """SimpleCNN on CIFAR-10: Adam 1e-3, 5 epochs, batch 64."""

    data: str = "cifar10"
    batch_size: int = 64
    epochs: int = 5


def main(config: Config) -> dict:
    try:
        data = load_dataset(config.data, config.data_dir, config.download)
    except DataUnavailableError as err:
        raise DataUnavailableError(f"{err}; --data digits or --data mnist5k train the same SimpleCNN offline") from err
    model = SimpleCNN(num_classes=data.num_classes)
    return fit(config, model, data, losses.classification, experiment="cifar_cnn", multi_seed=True).summary


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="cifar_cnn"))
