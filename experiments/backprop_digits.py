"""Seeds 000·1–2 and 001·1–2: the from-scratch sigmoid network, trained by the nnjax trainer on real digits.

    python -m experiments.backprop_digits

``BackpropMLP`` runs ``nnjax.scratch.backprop.apply``, whose ``custom_vjp`` is the hand-written backward
recursion, so every gradient the trainer applies comes from manual backprop. Before training, the
run measures the largest difference between those gradients and autodiff's on one batch.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from nnjax import cli, losses
from nnjax.config import TrainConfig, option
from nnjax.data import load_dataset
from nnjax.models import BackpropMLP
from nnjax.scratch import backprop
from nnjax.scratch.activations import ACTIVATIONS
from nnjax.tasks import fit


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """64-unit sigmoid hidden layer, softmax cross-entropy, SGD 0.5, batch 32, 30 epochs on 8×8 digits."""

    data: str = "digits"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "sgd"
    learning_rate: float = 0.5
    hidden: int = option(64, "units of the hidden layer")
    activation: str = option("sigmoid", "hidden-layer activation", choices=tuple(ACTIVATIONS))


def max_grad_error(model: BackpropMLP, x: jax.Array, y: jax.Array) -> float:
    """Largest |manual − autodiff| gradient entry of the batch-mean cross-entropy at a fresh init (one jitted
    program: run op by op, its hundreds of small dispatches cost seconds of compiling)."""

    @jax.jit
    def error(x, y):
        params = model.init(jax.random.PRNGKey(0), x)["params"]

        def loss(params, forward):
            logits = forward(params["layers"], x.reshape(x.shape[0], -1), model.hidden, "linear")
            return jnp.mean(losses.softmax_cross_entropy(logits, y))

        manual = jax.grad(loss)(params, backprop.apply)
        auto = jax.grad(loss)(params, lambda *args: backprop.forward(*args)[0])
        return jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(auto))]))

    return float(error(x, y))


def main(config: Config) -> dict:
    data = load_dataset(config.data, config.data_dir, config.download)
    model = BackpropMLP(features=(config.hidden, data.num_classes), hidden=config.activation)
    grad_error = max_grad_error(model, jnp.asarray(data.train["x"][:256]), jnp.asarray(data.train["y"][:256]))
    summary = fit(config, model, data, losses.classification, experiment="backprop_digits", multi_seed=True).summary
    return {**summary, "max_grad_error_vs_autodiff": grad_error}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="backprop_digits"))
