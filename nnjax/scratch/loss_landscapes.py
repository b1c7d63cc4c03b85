"""Losses as functions of one quantity, with their closed-form minimisers (seeds 003·7-8, 002·5).

* 003·7: MSE and clipped cross-entropy when every prediction equals one probability p;
* 003·8: the data loss of a one-weight model ``y ≈ x w`` on a noisy line, with no, L1 or L2 penalty;
* 002·5: the log-variances of ``nnjax.losses.multitask_uncertainty_loss`` learned by Adam for fixed
  task losses (they converge to ``log L_i``).

Shape letters: P probabilities on a grid, Y targets, N data points, W weights on a grid, T tasks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from nnjax import losses
from nnjax.scratch.descent import minimize

REGULARIZERS = ("No regularization", "L1", "L2")
"""The keys of ``regularized_losses`` and ``regularized_minimizers``, in plotting order."""


@functools.partial(jax.jit, static_argnames=("eps",))
def constant_prediction_losses(p_P: jax.Array, y_Y: jax.Array, eps: float = losses.DEFAULT_EPS) -> dict[str, jax.Array]:
    """``{'MSE', 'Cross-entropy'}`` [P] each: the mean loss over ``y_Y`` of predicting ``p`` for every target,
    for each ``p`` in ``p_P``; the cross-entropy clips probabilities to ``[eps, 1 - eps]``, so it is finite at 0 and 1."""
    constant_PxY = jnp.broadcast_to(p_P[:, None], (p_P.shape[0], y_Y.shape[0]))
    return {
        "MSE": jax.vmap(lambda pred: losses.mse(pred, y_Y))(constant_PxY),
        "Cross-entropy": jax.vmap(lambda pred: losses.binary_cross_entropy(pred, y_Y, eps))(constant_PxY),
    }


@functools.partial(jax.jit, static_argnames=("num_points",))
def noisy_line(key: jax.Array, noise_std: float, num_points: int = 100) -> tuple[jax.Array, jax.Array]:
    """Seed 003·8's data: ``x_N`` evenly spaced over [0, 10] and ``y_N = 2 x + 1 + noise_std * N(0, 1)``."""
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    x_N = jnp.linspace(0.0, 10.0, num_points)
    return x_N, 2 * x_N + 1 + noise_std * jax.random.normal(key, x_N.shape)


@jax.jit
def regularized_losses(x_N: jax.Array, y_N: jax.Array, w_W: jax.Array, reg_lambda: float) -> dict[str, jax.Array]:
    """``mse(x w, y) + λ penalty(w)`` of the one-weight model (no bias, as in the seed) for each ``w`` in
    ``w_W``: [W] per ``REGULARIZERS`` name (no penalty, ``λ |w|``, ``λ w²``)."""
    data_loss_W = jax.vmap(lambda w: losses.mse(x_N * w, y_N))(w_W)
    return {
        "No regularization": data_loss_W,
        "L1": data_loss_W + reg_lambda * jax.vmap(losses.l1_penalty)(w_W),
        "L2": data_loss_W + reg_lambda * jax.vmap(losses.l2_penalty)(w_W),
    }


@jax.jit
def regularized_minimizers(x_N: jax.Array, y_N: jax.Array, reg_lambda: float) -> dict[str, jax.Array]:
    """The exact minimiser (scalar) of each ``regularized_losses`` curve.

    With ``mse(w) = a w² - 2 c w + const``, ``a = mean(x²)``, ``c = mean(x y)``: ``c / a`` (none),
    ``sign(c) max(|c| - λ/2, 0) / a`` (L1, a soft threshold) and ``c / (a + λ)`` (L2).
    """
    a, c = jnp.mean(x_N**2), jnp.mean(x_N * y_N)
    return {
        "No regularization": c / a,
        "L1": jnp.sign(c) * jnp.maximum(jnp.abs(c) - reg_lambda / 2, 0.0) / a,
        "L2": c / (a + reg_lambda),
    }


@functools.partial(jax.jit, static_argnames=("steps",))
def fit_log_vars(losses_T: jax.Array, learning_rate: float, steps: int) -> dict[str, jax.Array]:
    """Adam from 0 on the log-variances ``s`` [T] of ``multitask_uncertainty_loss`` for fixed task losses
    ``losses_T``: ``{'log_vars' [T], 'initial_loss', 'final_loss'}`` (the optimum is ``s = log L``)."""
    objective = jax.value_and_grad(lambda s: losses.multitask_uncertainty_loss(losses_T, s))
    run = minimize(objective, jnp.zeros_like(losses_T), optax.adam(learning_rate), steps)
    return {
        "log_vars": run.params,
        "initial_loss": run.loss_T[0],
        "final_loss": losses.multitask_uncertainty_loss(losses_T, run.params),
    }
