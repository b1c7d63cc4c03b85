"""Seeds 001 slide 3, 003 slides 7-8, 004 slide 6, 002 slide 5: loss functions and regularization.

Computes the seeds' BCE/MSE examples with ``nnjax.losses``, plots MSE vs cross-entropy for a
constant prediction p (finite at p = 0 and 1 thanks to clipping), plots loss against a weight with
no/L1/L2 regularization on y = 2x + 1 + noise, and learns multitask log-variances, which converge
to log L_i.

    python -m experiments.loss_functions
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import cli, losses, plots
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.errors import ConfigError
from nnjax.scratch import loss_landscapes as landscapes


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """Seed examples; 003·7 comparison on y = [0, 1, 1, 0]; 003·8 with λ = 0.1; multitask L = 2, 0.5, 0.1."""

    eps: float = option(losses.DEFAULT_EPS, "cross-entropy clips probabilities to [eps, 1 - eps]; in (0, 0.5)")
    num_points: int = option(101, "grid points of the constant-prediction curves (>= 3; the weight grid has 10x)")
    reg_lambda: float = option(0.1, "L1/L2 regularization strength λ; 0: none")
    noise_std: float = option(2.0, "standard deviation of the noise in y = 2x + 1 + noise")
    multitask_losses: str = option("2.0,0.5,0.1", "comma-separated positive task losses L_i whose log-variances are learned")
    multitask_steps: int = option(300, "gradient steps of the multitask log-variance fit")
    learning_rate: float = option(0.1, "learning rate of the multitask fit")

    @property
    def task_losses(self) -> tuple[float, ...]:
        """``--multitask-losses`` as floats."""
        return tuple(float(v) for v in self.multitask_losses.split(",") if v.strip())

    def validate(self) -> None:
        if not 0 < self.eps < 0.5:
            raise ConfigError(f"--eps must be in (0, 0.5), got {self.eps}")
        if self.num_points < 3:
            raise ConfigError(f"--num-points must be >= 3, got {self.num_points}")
        if self.reg_lambda < 0 or self.noise_std < 0:
            raise ConfigError(f"--reg-lambda and --noise-std must be >= 0, got {self.reg_lambda} and {self.noise_std}")
        try:
            task_losses = self.task_losses
        except ValueError:
            task_losses = ()
        if not task_losses or min(task_losses) <= 0:
            raise ConfigError(f"--multitask-losses must be comma-separated positive numbers; got {self.multitask_losses!r}")
        check_positive(self, "learning_rate")
        super().validate()


def _r(value) -> float:
    return round(float(value), 6)


@functools.partial(jax.jit, static_argnames=("eps",))
def seed_examples(eps: float) -> dict:
    """The printed examples of seeds 001·3 (``1/(2m)`` MSE form) and 004·6 (mean form)."""
    y_001, p_001 = jnp.array([0.0, 1.0, 1.0]), jnp.array([0.1, 0.9, 0.8])
    y_004, p_004 = jnp.array([1.0, 0.0, 1.0, 1.0]), jnp.array([0.9, 0.1, 0.8, 0.95])
    return {
        "seed_001_3": {
            "bce": losses.binary_cross_entropy(p_001, y_001, eps),
            "mse_half_form": losses.half_mse(p_001, y_001),
            "mse_mean_form": losses.mse(p_001, y_001),
        },
        "seed_004_6": {
            "mse": losses.mse(p_004, y_004),
            "bce": losses.binary_cross_entropy(p_004, y_004, eps),
        },
    }


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "loss_functions")
    result = jax.tree.map(_r, jax.device_get(seed_examples(config.eps)))

    p_P = jnp.linspace(0.0, 1.0, config.num_points)
    comparison = jax.device_get(landscapes.constant_prediction_losses(p_P, jnp.array([0.0, 1.0, 1.0, 0.0]), config.eps))
    comparison = {name: comparison[name] for name in ("MSE", "Cross-entropy")}
    plots.loss_curves(
        p_P, comparison, os.path.join(workdir, "loss_comparison.png"),
        xlabel="constant prediction p", ylabel="loss", title="MSE vs cross-entropy on y = [0, 1, 1, 0]",
    )
    p_P = np.asarray(p_P)
    result["comparison"] = {
        name: {"at_p0": _r(v[0]), "at_p_half": _r(v[config.num_points // 2]), "at_p1": _r(v[-1]),
               "argmin_p": _r(p_P[np.argmin(v)]), "all_finite": bool(np.all(np.isfinite(v)))}
        for name, v in comparison.items()
    }

    w_W = jnp.linspace(-10.0, 10.0, config.num_points * 10)
    x_N, y_N = landscapes.noisy_line(jax.random.key(config.seed), config.noise_std)
    curves = jax.device_get(landscapes.regularized_losses(x_N, y_N, w_W, config.reg_lambda))
    curves = {name: curves[name] for name in landscapes.REGULARIZERS}
    argmins = jax.device_get(landscapes.regularized_minimizers(x_N, y_N, config.reg_lambda))
    w_W = np.asarray(w_W)
    best = w_W[np.argmin(curves["No regularization"])]
    plots.loss_curves(
        w_W, curves, os.path.join(workdir, "regularization.png"),
        xlabel="weight", ylabel="loss", title=f"Effect of regularization on loss (λ = {config.reg_lambda:g})",
        zoom=(float(best) - 0.5, float(best) + 0.5),
    )
    result["regularization"] = {
        name: {"argmin_weight": _r(w_W[np.argmin(v)]), "closed_form_argmin": _r(argmins[name]),
               "min_loss": _r(np.min(v))}
        for name, v in curves.items()
    }
    result["regularization_grid_spacing"] = _r(w_W[1] - w_W[0])

    losses_T = np.asarray(config.task_losses, np.float32)
    fit = jax.device_get(landscapes.fit_log_vars(jnp.asarray(losses_T), config.learning_rate, config.multitask_steps))
    optimum_T = np.log(losses_T)
    result["multitask"] = {
        "task_losses": list(config.task_losses),
        "learned_log_vars": [_r(s) for s in fit["log_vars"]],
        "log_task_losses": [_r(s) for s in optimum_T],
        "max_abs_error": float(f"{np.max(np.abs(fit['log_vars'] - optimum_T)):.3g}"),
        "initial_loss": _r(fit["initial_loss"]),
        "final_loss": _r(fit["final_loss"]),
        "closed_form_min_loss": _r(np.sum(1 + optimum_T)),
        "task_weights": [_r(w) for w in np.exp(-fit["log_vars"])],
    }
    result |= {"plots": ["loss_comparison.png", "regularization.png"], "workdir": workdir}
    return result


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="loss_functions"))
