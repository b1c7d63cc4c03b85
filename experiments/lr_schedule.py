"""Seed 004 slide 10: SGD at lr 0.1 with a StepLR schedule (×0.1 every 30 epochs) over 100 epochs.

    python -m experiments.lr_schedule

As in the seed, the optimizer takes one step per epoch; the learning rate of each epoch is read
back from the updates ``optax.sgd(step_lr(...))`` actually makes.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys

import numpy as np
import optax

from nnjax import cli, plots
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.optim import effective_learning_rates, step_lr


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The seed's schedule: lr 0.1, step size 30 epochs, gamma 0.1, 100 epochs, printed every 10."""

    learning_rate: float = option(0.1, "initial learning rate")
    step_size: int = option(30, "epochs between learning-rate decays")
    gamma: float = option(0.1, "factor applied to the learning rate every --step-size epochs")
    epochs: int = option(100, "epochs, one optimizer step each")
    print_every: int = option(10, "epochs between reported learning rates")

    def validate(self) -> None:
        check_positive(self, "learning_rate", "gamma")
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "lr_schedule")
    schedule = step_lr(config.learning_rate, config.step_size, config.gamma)
    lr_E = np.asarray(effective_learning_rates(optax.sgd(schedule), config.epochs))
    rounded = [float(f"{lr:.6g}") for lr in lr_E]
    plots.lr_schedule(
        np.arange(config.epochs), lr_E, os.path.join(workdir, "lr_schedule.png"), marks_every=config.print_every,
        title=f"StepLR: lr {config.learning_rate}, ×{config.gamma} every {config.step_size} epochs",
    )
    return {
        "lr_at_epoch": {str(e): rounded[e] for e in range(0, config.epochs, config.print_every)},
        "epochs_at_lr": {str(lr): n for lr, n in collections.Counter(rounded).items()},
        "final_lr": rounded[-1],
        "plots": ["lr_schedule.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="lr_schedule"))
