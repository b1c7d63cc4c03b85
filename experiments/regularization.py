"""Seed 002 slides 8 and 13: mixup / cutmix batches and stochastic depth, inside the trainer.

    python -m experiments.regularization --method cutmix --drop-path-rate 0.2
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp

from nnjax import cli, losses, plots
from nnjax.config import TrainConfig, check_fraction, option
from nnjax.data import load_dataset
from nnjax.errors import ConfigError
from nnjax.models import ResMLP
from nnjax.scratch import regularization
from nnjax.tasks import fit

EXPERIMENT = "regularization"


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """ResMLP (4 residual blocks, width 64, stochastic depth 0.1) on digits trained on mixup
    batches (alpha 1.0, as the seed); Adam 1e-3, batch 64, 30 epochs."""

    data: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    method: str = option("mixup", "how training batches are mixed: none, mixup or cutmix", choices=regularization.METHODS)
    alpha: float = option(1.0, "Beta(alpha, alpha) concentration of the mixing weight (> 0)")
    drop_path_rate: float = option(0.1, "stochastic depth: the last residual block's drop rate (block l: rate * l / depth)")
    depth: int = option(4, "residual blocks")
    width: int = option(64, "width of the residual stream")
    num_examples: int = option(8, "training images in each mixed-examples plot")

    def validate(self) -> None:
        super().validate()
        if not self.alpha > 0:
            raise ConfigError(f"--alpha (Beta(alpha, alpha) of the mixing weight) must be > 0, got {self.alpha}")
        check_fraction(self, "drop_path_rate")


def example_plots(config: Config, train: dict, num_classes: int, workdir: str) -> list[str]:
    """Mix the first ``num_examples`` training images with mixup and cutmix; one grid per method."""
    batch = {k: jnp.asarray(v[: config.num_examples]) for k, v in train.items()}
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    names = []
    for method in ("mixup", "cutmix"):
        mixed = jax.jit(regularization.augmentation(method, num_classes, config.alpha))(key, batch)  # one program
        name = f"{method}_examples.png"
        plots.mixed_examples(mixed["x"], mixed["y_soft"], os.path.join(workdir, name), title=f"{method}, alpha {config.alpha}")
        names.append(name)
    return names


def main(config: Config) -> dict:
    data = load_dataset(config.data, config.data_dir, config.download)
    model = ResMLP(
        num_classes=data.num_classes, width=config.width, depth=config.depth, drop_path_rate=config.drop_path_rate
    )
    augment = regularization.augmentation(config.method, data.num_classes, config.alpha)
    summary = fit(config, model, data, losses.classification, experiment=EXPERIMENT, augment=augment,
                  multi_seed=True).summary
    plot_names = example_plots(config, data.train, data.num_classes, summary["workdir"])
    return {
        "method": config.method,
        "alpha": config.alpha,
        "drop_path_rate": config.drop_path_rate,
        **summary,
        "plots": ["learning_curves.png", *plot_names],
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog=EXPERIMENT))
