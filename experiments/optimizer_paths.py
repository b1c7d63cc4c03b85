"""Seed 003 slide 9: SGD, momentum and Adam (written from scratch) descending x² + y² from (3, 3).

    python -m experiments.optimizer_paths
    python -m experiments.optimizer_paths --function elongated --steps 100

The seed's plotting passes a lambda to ``plt.contour`` and calls ``params.()``; here the contour is
drawn from a meshgrid of the function and each path is the sequence of visited points.
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
from nnjax.scratch import optimizers
from nnjax.scratch.descent import minimize

FUNCTIONS = {
    "quadratic": ("x² + y²", lambda p: p[0] ** 2 + p[1] ** 2),
    "elongated": ("0.1 x² + y²", lambda p: 0.1 * p[0] ** 2 + p[1] ** 2),
}
OPTIMIZERS = {
    "sgd": ("SGD", lambda lr: optimizers.sgd(lr)),
    "momentum": ("momentum (EMA, β=0.9)", lambda lr: optimizers.ema_momentum(lr, beta=0.9)),
    "adam": ("Adam", lambda lr: optimizers.adam(lr)),
}


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The seed's comparison: 50 steps at learning rate 0.1 from (3, 3) on x² + y²."""

    function: str = option("quadratic", "objective: quadratic (x² + y²) or elongated (0.1 x² + y²)", choices=tuple(FUNCTIONS))
    learning_rate: float = option(0.1, "learning rate of SGD, momentum and Adam alike")
    steps: int = option(50, "steps per optimizer")
    x0: float = option(3.0, "starting x")
    y0: float = option(3.0, "starting y")

    def validate(self) -> None:
        check_positive(self, "learning_rate")
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "optimizer_paths")
    formula, f = FUNCTIONS[config.function]
    start = jnp.array([config.x0, config.y0], jnp.float32)
    paths, losses, result = {}, {}, {}
    for name, (label, build) in OPTIMIZERS.items():
        descent = minimize(jax.value_and_grad(f), start, build(config.learning_rate), config.steps, keep_path=True)
        paths[label] = np.asarray(descent.path)
        losses[label] = np.asarray(jax.vmap(f)(descent.path))
        result[name] = {
            "final_point": [round(float(v), 6) for v in descent.params],
            "final_loss": float(f"{float(f(descent.params)):.6g}"),
        }

    extent = 1.2 * max(abs(config.x0), abs(config.y0), max(float(np.abs(p).max()) for p in paths.values()))
    grid = np.linspace(-extent, extent, 200)
    x_GxG, y_GxG = np.meshgrid(grid, grid)
    z_GxG = np.asarray(f(jnp.stack([x_GxG, y_GxG])))
    plots.optimizer_paths(
        x_GxG, y_GxG, z_GxG, paths, losses, os.path.join(workdir, "optimizer_paths.png"),
        title=f"{formula}: lr {config.learning_rate}, {config.steps} steps",
    )
    return {"function": config.function, "optimizers": result, "plots": ["optimizer_paths.png"], "workdir": workdir}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="optimizer_paths"))
