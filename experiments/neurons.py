"""Seeds 004·1–2, 003·3, 004·4, 002·1 (and 000·1, 001·1): a neuron, layers, and forward propagation.

    python -m experiments.neurons

Reproduces each slide's example with ``nnjax.scratch.backprop`` and the flax ``MLP``, and checks that
the flax SimpleNN and the scratch forward pass agree when given the same weights.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from nnjax import cli
from nnjax.config import RunConfig, prepare_workdir
from nnjax.models import MLP
from nnjax.models.mlp import mlp_layers
from nnjax.scratch import backprop


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The slides' examples: a 3-input neuron, SimpleNN(3, 5, 2), 3-4-2 / 3-4-1 forward passes, 784-128-64-10."""


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "neurons")
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 5)

    neuron_output = backprop.neuron(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.2, 0.3, 0.5]), 1.0)

    simple_nn = MLP(features=(5, 2))
    x_4x3 = jax.random.normal(keys[0], (4, 3))
    flax_params = simple_nn.init(keys[1], x_4x3)["params"]
    flax_out = simple_nn.apply({"params": flax_params}, x_4x3)
    scratch_out, _ = backprop.forward(mlp_layers(flax_params), x_4x3, hidden="relu", output="linear")

    no_bias = [{**layer, "b": jnp.zeros_like(layer["b"])} for layer in backprop.init_mlp(keys[2], (3, 4, 2), scale=1.0)]
    forward_003, _ = backprop.forward(no_bias, jnp.array([[0.1, 0.2, 0.3]]), hidden="relu", output="sigmoid")
    forward_004, _ = backprop.forward(backprop.init_mlp(keys[3], (3, 4, 1), scale=1.0), jnp.array([[1.0, 2.0, 3.0]]), hidden="relu", output="sigmoid")

    deep = backprop.init_mlp(keys[4], (784, 128, 64, 10))
    deep_out, deep_cache = backprop.forward(deep, jnp.zeros((1, 784)), hidden="sigmoid", output="sigmoid")
    return {
        "neuron_output": round(float(neuron_output), 6),
        "simple_nn_params": backprop.num_params(flax_params),
        "simple_nn_output_shape": list(flax_out.shape),
        "simple_nn_flax_vs_scratch_max_diff": float(jnp.max(jnp.abs(flax_out - scratch_out))),
        "forward_003_3": [round(float(v), 6) for v in forward_003[0]],
        "forward_004_4": round(float(forward_004[0, 0]), 6),
        "mlp_784_128_64_10_activation_shapes": [list(a.shape) for a, _ in deep_cache] + [list(deep_out.shape)],
        "mlp_784_128_64_10_params": backprop.num_params(deep),
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="neurons"))
