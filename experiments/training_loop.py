"""Seed 004 slide 5: the training loop — forward, loss, gradients, optimizer step — for SimpleNN.

    python -m experiments.training_loop

SimpleNN (Linear 2→3, ReLU, Linear 3→1), MSE, SGD 0.01, 100 epochs of 10 fresh random inputs each,
as on the slide. The slide's targets are pure noise, so there is nothing to learn; here they come
from a fixed random linear teacher plus noise (std ``--noise``), so the loop has a measurable effect:
the run reports the held-out MSE before and after training next to the noise floor.
In JAX the loop body is ``grads = jax.grad(loss)(params); updates = tx.update(grads, ...)``; all
epochs run in one jitted ``lax.scan`` (``nnjax.scratch.descent.minimize``).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import optax

from nnjax import cli, plots
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.errors import ConfigError
from nnjax.models import MLP
from nnjax.scratch.descent import minimize


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """SimpleNN 2-3-1, MSE, SGD learning rate 0.01, 100 epochs of batch 10."""

    epochs: int = option(100, "SGD steps, each on a fresh batch")
    batch_size: int = option(10, "random inputs per step")
    learning_rate: float = option(0.01, "SGD learning rate")
    noise: float = option(0.1, "standard deviation of the noise on the linear teacher's targets")
    test_size: int = option(1000, "held-out examples of the before/after MSE")

    def validate(self) -> None:
        super().validate()
        check_positive(self, "learning_rate")
        if self.noise < 0:
            raise ConfigError(f"--noise must be >= 0, got {self.noise}")


def teacher_data(key: jax.Array, n: int, w_2x1: jax.Array, noise: float) -> dict[str, jax.Array]:
    """n inputs x ~ N(0, I) [n, 2] with targets y = x w + noise·ε [n, 1]."""
    x_key, eps_key = jax.random.split(key)
    x = jax.random.normal(x_key, (n, 2))
    return {"x": x, "y": x @ w_2x1 + noise * jax.random.normal(eps_key, (n, 1))}


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "training_loop")
    teacher_key, train_key, test_key, init_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    w_2x1 = jax.random.normal(teacher_key, (2, 1))
    train = teacher_data(train_key, config.epochs * config.batch_size, w_2x1, config.noise)
    batches = jax.tree.map(lambda a: a.reshape(config.epochs, config.batch_size, *a.shape[1:]), train)
    test = teacher_data(test_key, config.test_size, w_2x1, config.noise)

    model = MLP(features=(3, 1))

    def mse(params, batch):
        return jnp.mean((model.apply({"params": params}, batch["x"]) - batch["y"]) ** 2)

    params = model.init(init_key, test["x"])["params"]
    result = minimize(jax.value_and_grad(mse), params, optax.sgd(config.learning_rate), batches=batches)
    plots.loss_curve(result.loss_T, os.path.join(workdir, "training_loss.png"), title="SimpleNN, SGD", ylabel="batch MSE")
    return {
        "test_mse_before": round(float(mse(params, test)), 6),
        "test_mse_after": round(float(mse(result.params, test)), 6),
        "noise_floor_mse": round(config.noise**2, 6),
        "first_epoch_loss": round(float(result.loss_T[0]), 6),
        "last_epoch_loss": round(float(result.loss_T[-1]), 6),
        "epochs": config.epochs,
        "plots": ["training_loss.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="training_loop"))
