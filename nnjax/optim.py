"""Optimizers built from a config, learning-rate schedules and gradient accumulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from nnjax.errors import ConfigError


def make_optimizer(name: str, learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
    """An optax optimizer by name: 'adam', 'adamw', 'sgd' or 'momentum' (SGD with momentum 0.9)."""
    builders = {
        "adam": lambda: optax.adam(learning_rate),
        "adamw": lambda: optax.adamw(learning_rate),
        "sgd": lambda: optax.sgd(learning_rate),
        "momentum": lambda: optax.sgd(learning_rate, momentum=0.9),
    }
    if name not in builders:
        raise ConfigError(f"--optimizer must be one of {', '.join(builders)}, got {name!r}")
    return builders[name]()


def step_lr(init_value: float, step_size: int = 30, gamma: float = 0.1) -> optax.Schedule:
    """PyTorch's ``StepLR`` as an optax schedule: ``lr(e) = init_value · gamma^⌊e / step_size⌋``.

    ``e`` counts scheduler steps: epochs when the optimizer takes one step per epoch, as in seed
    004 slide 10, otherwise optimizer steps (pass ``step_size`` in steps, e.g. 30 · steps_per_epoch).
    """
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return init_value * gamma ** jnp.floor_divide(count, step_size).astype(jnp.float32)

    return schedule


def effective_learning_rates(tx: optax.GradientTransformation, steps: int) -> jax.Array:
    """The step sizes ``tx`` takes over ``steps`` updates, read from its updates: [steps].

    Feeds a scalar parameter a unit gradient and records ``-update``; for SGD (and any optimizer
    whose update is ``-lr · g`` when it has no history) this is the learning rate actually used.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    params = jnp.zeros([], jnp.float32)
    grads = jnp.ones([], jnp.float32)

    def step(opt_state, _):
        updates, opt_state = tx.update(grads, opt_state, params)
        return opt_state, -updates

    _, lr_T = jax.lax.scan(step, tx.init(params), length=steps)
    return lr_T


def accumulate(tx: optax.GradientTransformation, every_k: int) -> optax.GradientTransformation:
    """``tx`` applied to the mean gradient of every ``every_k`` calls (``optax.MultiSteps``).

    The first ``every_k - 1`` calls of each group return zero updates and only accumulate; the
    last applies ``tx`` to the mean. With equal micro-batches of a mean loss this is one step of
    ``tx`` on their union (seed 002 slides 2 and 13).
    """
    if every_k < 1:
        raise ValueError(f"every_k must be >= 1, got {every_k}")
    return optax.MultiSteps(tx, every_k_schedule=every_k).gradient_transformation()
