"""Seed 002 slides 2 and 13: gradient accumulation -- k micro-batches per optimizer update.

    python -m experiments.gradient_accumulation
    python -m experiments.gradient_accumulation --accumulate-steps 8 --batch-size 16

Trains an MLP on the scikit-learn digits through ``nnjax.tasks.fit`` with the optimizer wrapped in
``optax.MultiSteps`` (``nnjax.optim.accumulate``): ``--batch-size`` is the micro-batch, so each
update uses the mean gradient of ``accumulate_steps × batch_size`` examples (a group may straddle
an epoch boundary; ``steps`` in the result counts micro-batches). Before training it
measures, from the initial parameters, how far one accumulated update lands from one update on
the equivalent big batch (MultiSteps and the hand-written ``lax.scan`` accumulation).
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import numpy as np

from nnjax import cli, losses
from nnjax.config import TrainConfig, option
from nnjax.data import load_dataset
from nnjax.errors import ConfigError
from nnjax.models import MLP
from nnjax.optim import accumulate, make_optimizer
from nnjax.scratch.accumulate import accumulation_gap
from nnjax.tasks import fit


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """MLP 64-64-10 on digits, Adam 3e-3, micro-batches of 32 accumulated 4 at a time (batch 128)."""

    data: str = "digits"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    accumulate_steps: int = option(4, "micro-batches of --batch-size per optimizer update (optax.MultiSteps)")
    hidden: int = option(64, "units of the MLP's hidden layer")


def main(config: Config) -> dict:
    data = load_dataset(config.data, config.data_dir, config.download)
    model = MLP(features=(config.hidden, data.num_classes))
    tx = make_optimizer(config.optimizer, config.learning_rate)

    big_batch = {k: v[: config.accumulate_steps * config.batch_size] for k, v in data.train.items()}
    if len(big_batch["y"]) < config.accumulate_steps * config.batch_size:
        raise ConfigError(
            f"--accumulate-steps × --batch-size = {config.accumulate_steps * config.batch_size} exceeds "
            f"the {len(data.train['y'])} training examples"
        )
    params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), big_batch["x"][:1])["params"]  # one program

    def mean_loss(params, batch):
        return losses.classification(model.apply({"params": params}, batch["x"]), batch)["loss"].mean()

    gap = accumulation_gap(mean_loss, params, big_batch, tx, config.accumulate_steps)

    result = fit(config, model, data, losses.classification, "gradient_accumulation",
                 tx=accumulate(tx, config.accumulate_steps), multi_seed=True)
    return {
        **result.summary,
        "micro_batch_size": config.batch_size,
        "accumulate_steps": config.accumulate_steps,
        "effective_batch_size": config.accumulate_steps * config.batch_size,
        "optimizer_updates": result.summary["steps"] // config.accumulate_steps,
        "max_param_diff_multisteps_vs_big_batch": float(np.format_float_scientific(gap["multisteps"], 3)),
        "max_param_diff_scan_vs_big_batch": float(np.format_float_scientific(gap["scan"], 3)),
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="gradient_accumulation"))
