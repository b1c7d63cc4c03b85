"""Seeds 001 slides 6-7 and 004 slides 8-9: batch norm and inverted dropout from scratch, checked
against flax, then an MLP on digits trained with and without them.

    python -m experiments.batchnorm_dropout
"""

from __future__ import annotations

import dataclasses
import os
import sys

import flax.linen as nn
import jax
import numpy as np

from nnjax import cli, losses, plots
from nnjax.config import TrainConfig, check_fraction, check_positive, make_workdir, option, prepare_workdir
from nnjax.data import load_dataset
from nnjax.errors import ConfigError
from nnjax.models import DropoutMLP
from nnjax.scratch import normalization
from nnjax.tasks import fit

EXPERIMENT = "batchnorm_dropout"
VARIANTS = {  # name -> (dropout, batch norm)
    "plain": (False, False),
    "dropout": (True, False),
    "batchnorm": (False, True),
    "batchnorm_dropout": (True, True),
}


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """Seed examples (BN of a 32x10 batch, eps 1e-8; dropout keep_prob 0.8 on 5x10) vs flax; then a
    64-50-10 ReLU MLP on digits: plain / dropout 0.5 / batch norm / both; Adam 1e-3, batch 32."""

    data: str = "digits"
    epochs: int = 20
    batch_size: int = 32
    hidden: int = option(50, "units of the MLP's hidden layer")
    dropout_rate: float = option(0.5, "dropout rate of the dropout variants' hidden layer, in [0, 1)")
    keep_prob: float = option(0.8, "keep probability of the seed's dropout example, in (0, 1]")
    bn_epsilon: float = option(1e-8, "batch-norm epsilon of the seed's example and of the models")
    variants: str = option(",".join(VARIANTS), f"comma-separated models to train, a subset of {','.join(VARIANTS)}")

    @property
    def variant_names(self) -> tuple[str, ...]:
        """``--variants`` as a tuple of model variant names."""
        return tuple(name.strip() for name in self.variants.split(",") if name.strip())

    def validate(self) -> None:
        super().validate()
        unknown = [name for name in self.variant_names if name not in VARIANTS]
        if unknown or not self.variant_names:
            raise ConfigError(
                f"--variants must be a comma-separated subset of {','.join(VARIANTS)}; got {self.variants!r}"
            )
        check_positive(self, "bn_epsilon")
        check_fraction(self, "dropout_rate")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ConfigError(f"--keep-prob must be in (0, 1], got {self.keep_prob}")


def _seed_arrays(key: jax.Array, epsilon: float, rate: float) -> dict[str, jax.Array]:
    """The arrays of seed 001.6 (BN of a 32x10 batch) and 001.7 (dropout of a 5x10 batch), scratch and flax."""
    bn_key, init_key, drop_key, drop_x_key = jax.random.split(key, 4)
    x_32x10 = jax.random.normal(bn_key, (32, 10))
    params, state = normalization.init_batch_norm(10)
    y_32x10, state = normalization.batch_norm(params, state, x_32x10, train=True, eps=epsilon)
    flax_bn = nn.BatchNorm(momentum=0.9, epsilon=epsilon, use_fast_variance=False)
    variables = flax_bn.init(init_key, x_32x10, use_running_average=False)
    flax_y, flax_vars = flax_bn.apply(variables, x_32x10, use_running_average=False, mutable=["batch_stats"])
    x_5x10 = jax.random.normal(drop_x_key, (5, 10))
    return {
        "bn_x": x_32x10,
        "bn_y": y_32x10,
        "bn_flax_y": flax_y,
        "bn_state": state,
        "bn_flax_state": flax_vars["batch_stats"],
        "drop_x": x_5x10,
        "drop_train": normalization.dropout(drop_key, x_5x10, rate, train=True),
        "drop_eval": normalization.dropout(drop_key, x_5x10, rate, train=False),
        "drop_flax": nn.Dropout(rate).apply({}, x_5x10, deterministic=False, rng=drop_key),
    }


def seed_examples(config: Config) -> dict[str, float]:
    """Seed 001.6/001.7 figures: BN input/output mean and std, dropout train vs eval, differences to flax."""
    rate = 1.0 - config.keep_prob
    a = jax.device_get(
        jax.jit(_seed_arrays, static_argnums=(1, 2))(jax.random.PRNGKey(config.seed), config.bn_epsilon, rate)
    )
    kept = a["drop_train"] != 0
    stats_diff = max(float(np.max(np.abs(a["bn_state"][k] - a["bn_flax_state"][k]))) for k in ("mean", "var"))
    return {
        "bn_input_mean": round(float(np.mean(a["bn_x"])), 6),
        "bn_input_std": round(float(np.std(a["bn_x"])), 6),
        "bn_output_mean": round(float(np.mean(a["bn_y"])), 6) + 0.0,
        "bn_output_std": round(float(np.std(a["bn_y"])), 6),
        "bn_max_abs_diff_vs_flax": float(np.max(np.abs(a["bn_y"] - a["bn_flax_y"]))),
        "bn_running_stats_max_abs_diff_vs_flax": stats_diff,
        "dropout_train_zero_fraction": round(float(1.0 - np.mean(kept)), 4),
        "dropout_kept_scale": round(float(np.mean(a["drop_train"][kept] / a["drop_x"][kept])), 6),
        "dropout_eval_max_abs_change": float(np.max(np.abs(a["drop_eval"] - a["drop_x"]))),
        "dropout_max_abs_diff_vs_flax": float(np.max(np.abs(a["drop_train"] - a["drop_flax"]))),
    }


def main(config: Config) -> dict:
    workdir = make_workdir(config, EXPERIMENT)  # config.json once every variant ran: one refused keeps it
    result = seed_examples(config)
    data = load_dataset(config.data, config.data_dir, config.download)
    histories, compile_s = {}, 0.0
    for name in config.variant_names:
        use_dropout, use_bn = VARIANTS[name]
        model = DropoutMLP(
            hidden=(config.hidden,),
            num_classes=data.num_classes,
            dropout_rate=config.dropout_rate if use_dropout else 0.0,
            batch_norm=use_bn,
            bn_epsilon=config.bn_epsilon,
        )
        run = dataclasses.replace(config, workdir=os.path.join(workdir, name))
        fitted = fit(run, model, data, losses.classification, experiment=f"{EXPERIMENT}/{name}", multi_seed=True)
        histories[name] = fitted.history
        compile_s += fitted.summary["compile_s"]
        for key in ("test_accuracy", "test_accuracy_std", "test_accuracy_per_seed"):  # the last two with --seeds
            if key in fitted.summary:
                result[key.replace("test_accuracy", f"test_accuracy_{name}")] = fitted.summary[key]
    plots.compare_curves(histories, "accuracy", os.path.join(workdir, "accuracy_curves.png"), title=f"MLP on {data.name}")
    prepare_workdir(dataclasses.replace(config, workdir=workdir), EXPERIMENT)
    return {**result, "data": data.name, "epochs": config.epochs,
            "compile_s": round(compile_s, 2), "plots": ["accuracy_curves.png"], "workdir": workdir}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog=EXPERIMENT))
