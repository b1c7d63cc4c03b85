"""Seed 003 slide 5: gradient descent on f(x) = x² + 5 sin x from x0 = 3 (lr 0.1, 50 steps).

    python -m experiments.gradient_descent
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
from nnjax.scratch.descent import minimize
from nnjax.scratch.optimizers import sgd

PLOT_RANGE = (-5.0, 5.0)


def f(x: jax.Array) -> jax.Array:
    """The seed's objective x² + 5 sin x (elementwise)."""
    return x**2 + 5.0 * jnp.sin(x)


def global_minimizer(lo: float, hi: float, num: int = 10_001, newton_steps: int = 5) -> float:
    """argmin of ``f`` on [lo, hi] found independently of descent: dense grid, then Newton on f' = 0."""
    grid = np.linspace(lo, hi, num)
    x = jnp.asarray(grid[np.argmin(np.asarray(f(jnp.asarray(grid))))])
    df, d2f = jax.grad(f), jax.grad(jax.grad(f))
    for _ in range(newton_steps):
        x = x - df(x) / d2f(x)
    return float(x)


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The seed's run: start at x0 = 3, learning rate 0.1, 50 plain gradient steps."""

    x0: float = option(3.0, "starting point")
    learning_rate: float = option(0.1, "step size")
    steps: int = option(50, "gradient steps")

    def validate(self) -> None:
        check_positive(self, "learning_rate")
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "gradient_descent")
    descent = minimize(
        jax.value_and_grad(f), jnp.asarray(config.x0, jnp.float32), sgd(config.learning_rate), config.steps, keep_path=True
    )
    x_min = float(descent.params)
    x_star = global_minimizer(*PLOT_RANGE)
    lo, hi = min(PLOT_RANGE[0], float(descent.path.min())), max(PLOT_RANGE[1], float(descent.path.max()))
    curve_x = np.linspace(lo, hi, 400)
    plots.descent_path_1d(
        curve_x, np.asarray(f(curve_x)), np.asarray(descent.path), np.asarray(f(descent.path)),
        os.path.join(workdir, "gradient_descent.png"), minimizer=x_star,
        title=f"Gradient descent on x² + 5 sin x (lr {config.learning_rate}, {config.steps} steps)",
    )
    return {
        "x_min": round(x_min, 6),
        "f_x_min": round(float(f(x_min)), 6),
        "grad_at_x_min": round(abs(float(jax.grad(f)(x_min))), 8),
        "true_minimizer": round(x_star, 6),
        "f_true_minimizer": round(float(f(x_star)), 6),
        "steps": config.steps,
        "plots": ["gradient_descent.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="gradient_descent"))
