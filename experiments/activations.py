"""Seeds 001 slide 5, 003 slide 2, 004 slide 3: activations and their hand-written derivatives.

Plots every activation in ``nnjax.scratch.activations`` and its derivative on [-5, 5], checks each
hand-written derivative against ``jax.vmap(jax.grad(f))`` and prints the seed's ReLU/tanh values.

    python -m experiments.activations
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import cli, plots
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.errors import ConfigError
from nnjax.scratch import activations

EXTREME_Z = (0.0, -20.0, 20.0, -1e4, 1e4)
"""Points added to the plotting grid when measuring derivative errors: the kink at 0 and large |z|."""


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """Activations and derivatives on [-5, 5] (seed 003·2 / 004·3) and the seed 001·5 example values."""

    z_max: float = option(5.0, "curves are drawn on [-z_max, z_max]")
    num_points: int = option(201, "grid points on that interval (>= 2)")

    def validate(self) -> None:
        check_positive(self, "z_max")
        if self.num_points < 2:
            raise ConfigError(f"--num-points must be >= 2, got {self.num_points}")
        super().validate()


def _rounded(values: jax.Array) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values)]


@jax.jit
def evaluate(z_N: jax.Array, probe_M: jax.Array, z_seed: jax.Array) -> tuple[dict, dict, dict]:
    """Curves (f, f') on ``z_N``, max |f' − jax.grad(f)| on ``probe_M`` and the seed's values, in one jit."""
    curves, errors = {}, {}
    for name, (f, f_prime) in activations.ACTIVATIONS.items():
        curves[name] = (f(z_N), f_prime(z_N))
        errors[name] = jnp.max(jnp.abs(f_prime(probe_M) - jax.vmap(jax.grad(f))(probe_M)))
    logits_K = jnp.linspace(-3.0, 3.0, 5)
    jacobian_KxK = jax.jacobian(activations.softmax)(logits_K)
    errors["softmax_jacobian"] = jnp.max(jnp.abs(activations.softmax_jacobian(logits_K) - jacobian_KxK))
    seed_values = {
        "relu": activations.relu(z_seed),
        "relu_derivative": activations.relu_prime(z_seed),
        "tanh": activations.tanh(z_seed),
        "tanh_derivative": activations.tanh_prime(z_seed),
    }
    return curves, errors, seed_values


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "activations")
    z_N = jnp.linspace(-config.z_max, config.z_max, config.num_points)
    probe_M = jnp.concatenate([z_N, jnp.asarray(EXTREME_Z, z_N.dtype)])
    z_seed = jnp.arange(-2.0, 3.0)
    curves, errors, seed_values = evaluate(z_N, probe_M, z_seed)
    curves = {name: curves[name] for name in activations.ACTIVATIONS}
    seed_example = {"z": _rounded(z_seed)} | {name: _rounded(v) for name, v in seed_values.items()}
    plots.activation_curves(z_N, curves, os.path.join(workdir, "activations.png"))
    return {
        "max_derivative_error": {name: float(f"{float(errors[name]):.3g}") for name in (*activations.ACTIVATIONS, "softmax_jacobian")},
        "error_points": len(probe_M),
        "seed_001_5": seed_example,
        "plots": ["activations.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="activations"))
