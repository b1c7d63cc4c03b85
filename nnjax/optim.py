"""Optimizers built from a config, learning-rate schedules, gradient accumulation and freezing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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


def adamw_warmup_cosine(
    learning_rate: float, total_steps: int, warmup_steps: int = 100, weight_decay: float = 0.1, b2: float = 0.99,
    clip_norm: float = 1.0,
) -> optax.GradientTransformation:
    """nanoGPT's recipe: gradients clipped at global norm ``clip_norm``, then AdamW (``b2``, decoupled
    ``weight_decay`` on parameters with >= 2 dimensions only) whose learning rate warms up linearly from 0
    over ``min(warmup_steps, total_steps - 1)`` steps and decays along a cosine to ``learning_rate / 10``
    at ``total_steps``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, min(warmup_steps, total_steps - 1), total_steps, learning_rate / 10
    )
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(schedule, b2=b2, weight_decay=weight_decay, mask=decay_mask),
    )


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


ParamPath = tuple[str, ...]


def trainable_labels(params: Any, trainable: Callable[[ParamPath], bool]) -> Any:
    """A tree like ``params`` holding 'trainable' or 'frozen' at each leaf, by ``trainable(path)``.

    ``path`` is the tuple of dict keys leading to the leaf, e.g. ('fc', 'kernel') or
    ('layer1_0', 'bn1', 'scale'). ValueError if no leaf is trainable (usually a misspelt name).
    """

    def label(path, _):
        return "trainable" if trainable(tuple(str(getattr(k, "key", k)) for k in path)) else "frozen"

    labels = jax.tree_util.tree_map_with_path(label, params)
    if "trainable" not in jax.tree.leaves(labels):
        raise ValueError("trainable(path) is False for every parameter: nothing would train")
    return labels


def freeze(
    tx: optax.GradientTransformation, params: Any, trainable: Callable[[ParamPath], bool]
) -> optax.GradientTransformation:
    """``tx`` for the parameters where ``trainable(path)`` holds; zero updates for the rest.

    ``optax.multi_transform`` with ``optax.set_to_zero()`` on the frozen leaves: they keep their
    values exactly (no weight decay, no momentum) and ``tx`` keeps no state for them. The PyTorch
    idiom ``p.requires_grad = False`` for the backbone, ``fc`` replaced (seed 004 slide 13) is
    ``freeze(tx, params, trainable=lambda path: path[0] == 'fc')``. Freezing the optimizer does not
    freeze BatchNorm statistics: run a frozen backbone in evaluation mode
    (``nnjax.models.resnet.ResNet(frozen_backbone=True)``).
    """
    labels = trainable_labels(params, trainable)
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


def parameter_counts(params: Any, trainable: Callable[[ParamPath], bool]) -> dict[str, int]:
    """``{'trainable': n, 'frozen': m, 'total': n + m}``: scalar parameter counts split by ``trainable(path)``."""
    labels = trainable_labels(params, trainable)
    counts = {"trainable": 0, "frozen": 0}
    for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(params)):
        counts[label] += math.prod(leaf.shape)  # arrays and ShapeDtypeStructs alike
    return counts | {"total": counts["trainable"] + counts["frozen"]}
