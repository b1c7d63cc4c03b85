"""Pure train/eval steps, written once and wrapped by every parallelism mode.

An objective maps ``(model_outputs, batch)`` to per-example arrays ``{'loss': [B], ...}``.
With ``axis_name`` set (pmap), gradients, metrics and BatchNorm statistics are averaged across
devices so every replica stays identical. An optional ``augment(key, batch) -> batch`` (mixup,
cutmix, ...) transforms each training batch inside the step; evaluation batches are never augmented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from nnjax.train.state import TrainState, model_variables

Batch = dict[str, jax.Array]
Objective = Callable[[Any, Batch], dict[str, jax.Array]]
Metrics = dict[str, jax.Array]
Augment = Callable[[jax.Array, Batch], Batch]


def make_train_step(
    objective: Objective, axis_name: str | None = None, augment: Augment | None = None
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """``train_step(state, batch) -> (state, batch-mean metrics)``: one gradient update.

    The state's key is split once per step into the next key and a step key (folded with the
    device index under pmap). With ``augment``, the step key is split again into the augmentation
    key and the dropout key, and the objective sees ``augment(key, batch)``; without it the step
    key goes to dropout unchanged.
    """

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        rng, step_key = jax.random.split(state.rng)
        if axis_name is not None:
            step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))
        if augment is not None:
            step_key, augment_key = jax.random.split(step_key)
            batch = augment(augment_key, batch)

        def loss_fn(params):
            outputs, updates = state.apply_fn(
                model_variables(params, state.batch_stats),
                batch["x"],
                train=True,
                rngs={"dropout": step_key},
                mutable=["batch_stats"],
            )
            means = {k: jnp.mean(v) for k, v in objective(outputs, batch).items()}
            return means["loss"], (means, updates.get("batch_stats", state.batch_stats))

        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        if axis_name is not None:
            grads, metrics, batch_stats = jax.lax.pmean((grads, metrics, batch_stats), axis_name)
        state = state.apply_gradients(grads=grads, batch_stats=batch_stats, rng=rng)
        return state, metrics

    return train_step


def make_eval_step(objective: Objective, axis_name: str | None = None) -> Callable[[TrainState, Batch], Metrics]:
    """``eval_step(state, batch) -> sums``: mask-weighted sums of each metric plus ``'count'``."""

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        outputs = state.apply_fn(model_variables(state.params, state.batch_stats), batch["x"], train=False)
        mask = batch["mask"]
        sums = {k: jnp.sum(v * mask) for k, v in objective(outputs, batch).items()}
        sums["count"] = jnp.sum(mask)
        if axis_name is not None:
            sums = jax.lax.psum(sums, axis_name)
        return sums

    return eval_step


def make_train_chunk(
    train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]],
    constrain: Callable[[Batch], Batch] = lambda batch: batch,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """``train_chunk(state, data, idx_CxB) -> (state, metrics [C])``: C steps in one ``lax.scan``.

    ``data`` is the whole device-resident training split; step ``i`` trains on rows ``idx_CxB[i]``.
    ``constrain`` places each gathered batch (e.g. shards it across a mesh).
    """

    def train_chunk(state: TrainState, data: Batch, idx_CxB: jax.Array) -> tuple[TrainState, Metrics]:
        def body(state, idx_B):
            batch = constrain(jax.tree.map(lambda a: jnp.take(a, idx_B, axis=0), data))
            return train_step(state, batch)

        return jax.lax.scan(body, state, idx_CxB)

    return train_chunk
