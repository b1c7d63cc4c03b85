"""Seed 003 slide 6 (and 000·1–2, 001·1–2): XOR learned by a sigmoid network with hand-written backprop.

    python -m experiments.xor_backprop

A 2-4-1 sigmoid network, mean squared error, plain gradient descent on the four XOR points for
1,500 iterations. The gradients come from ``nnjax.scratch.backprop.loss_and_grads`` (the textbook
backward recursion); the run also measures how far they are from ``jax.grad`` at the start and
at the end of training.
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
from nnjax.scratch import backprop
from nnjax.scratch.descent import minimize

X_4x2 = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
Y_4x1 = jnp.array([[0], [1], [1], [0]], jnp.float32)


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """2-4-1 sigmoid network, MSE, gradient descent with learning rate 1.0 for 1,500 iterations."""

    hidden: int = option(4, "sigmoid hidden units")
    iterations: int = option(1500, "gradient-descent steps on the four points")
    learning_rate: float = option(1.0, "gradient-descent step size")
    loss: str = option("mse", "mse (mean squared error, the seed's) or bce (binary cross-entropy)", choices=("mse", "bce"))

    def validate(self) -> None:
        super().validate()
        check_positive(self, "learning_rate")


def max_grad_error(params: backprop.Params, loss: str) -> float:
    """Largest |hand-written − autodiff| gradient entry on the XOR batch."""
    _, manual = backprop.loss_and_grads(params, X_4x2, Y_4x1, loss)
    auto = jax.grad(lambda p: backprop.loss_and_grads(p, X_4x2, Y_4x1, loss)[0])(params)
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)))


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "xor_backprop")
    params = backprop.init_mlp(jax.random.PRNGKey(config.seed), (2, config.hidden, 1))
    initial_error = max_grad_error(params, config.loss)
    result = minimize(
        lambda p: backprop.loss_and_grads(p, X_4x2, Y_4x1, config.loss), params, optax.sgd(config.learning_rate), config.iterations
    )
    outputs, _ = backprop.forward(result.params, X_4x2)
    plots.loss_curve(result.loss_T, os.path.join(workdir, "xor_loss.png"), title="XOR, hand-written backprop", ylabel=config.loss)
    return {
        "accuracy": float(backprop.accuracy(result.params, X_4x2, Y_4x1)),
        "outputs": [round(float(o), 4) for o in outputs[:, 0]],
        "initial_loss": round(float(result.loss_T[0]), 6),
        "final_loss": round(float(backprop.loss_and_grads(result.params, X_4x2, Y_4x1, config.loss)[0]), 6),
        "iterations": config.iterations,
        "max_grad_error_vs_autodiff": max(initial_error, max_grad_error(result.params, config.loss)),
        "plots": ["xor_loss.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="xor_backprop"))
