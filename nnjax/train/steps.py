"""Pure train/eval steps, written once and wrapped by every parallelism mode.

An objective maps ``(model_outputs, batch)`` to per-example arrays ``{'loss': [B], ...}``.
With ``axis_name`` set (pmap), gradients, metrics and BatchNorm statistics are averaged across
devices so every replica stays identical. An optional ``augment(key, batch) -> batch`` (mixup,
cutmix, ...) transforms each training batch inside the step; evaluation batches are never augmented.

Two memory options (seed 002 slides 2 and 4):

- ``grad_accum_steps=K`` computes each step's gradient as the mean over K equal micro-batches in a
  ``lax.scan`` (``nnjax.scratch.accumulate.accumulate_gradient``), so only one micro-batch of
  activations is alive at a time; metrics and BatchNorm statistics are micro-batch means.
- ``precision='bfloat16'`` is mixed precision: parameters, optimizer state and BatchNorm statistics
  stay float32; the forward/backward pass sees bfloat16 copies of the floating parameters and of
  floating inputs ``batch['x']`` (integer token ids are left alone); model outputs are cast back to
  float32 before the objective, and gradients arrive in float32 (the transpose of the cast). Flax
  ``LayerNorm``/``BatchNorm`` compute their statistics in float32 and nnjax attention runs its
  softmax in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from nnjax.scratch.accumulate import accumulate_gradient
from nnjax.train.state import TrainState, model_variables

Batch = dict[str, jax.Array]
Objective = Callable[[Any, Batch], dict[str, jax.Array]]
Metrics = dict[str, jax.Array]
Augment = Callable[[jax.Array, Batch], Batch]
TrainStep = Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
EvalStep = Callable[[TrainState, Batch], Metrics]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point leaf cast to ``dtype``; integer and bool leaves unchanged."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def stride_rows(batch: Batch, k: int) -> Batch:
    """Reorder the rows of every leaf [B, ...] as rows 0, k, 2k, ..., then 1, k+1, ..., k-1, 2k-1, ...

    Split into k contiguous micro-batches afterwards, micro-batch i holds rows i, i+k, i+2k, ...:
    when the batch is sharded in equal blocks over devices (and k divides each block), every device
    already holds its share of every micro-batch, so the accumulation scan moves no data between
    devices, and the micro-batches are the same under ``--parallel none``, ``jit`` and ``pmap``.
    """
    return jax.tree.map(lambda a: a.reshape(-1, k, *a.shape[1:]).swapaxes(0, 1).reshape(a.shape), batch)


def make_train_step(
    objective: Objective,
    axis_name: str | None = None,
    augment: Augment | None = None,
    grad_accum_steps: int = 1,
    precision: str = "float32",
) -> TrainStep:
    """``train_step(state, batch) -> (state, batch-mean metrics)``: one gradient update.

    The state's key is split once per step into the next key and a step key (folded with the
    device index under pmap). With ``augment``, the step key is split again into the augmentation
    key and the dropout key, and the objective sees ``augment(key, batch)``; without it the step
    key goes to dropout unchanged. With ``grad_accum_steps`` K > 1 the batch [B, ...] is split into
    K micro-batches [B/K, ...] (B must be a multiple of K) and the dropout key into K keys, one per
    micro-batch. ``precision`` is the forward/backward dtype (see the module docstring).
    """
    compute_dtype = jnp.dtype(precision)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        rng, step_key = jax.random.split(state.rng)
        if axis_name is not None:
            step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))
        if augment is not None:
            step_key, augment_key = jax.random.split(step_key)
            batch = augment(augment_key, batch)

        def loss_fn(params, batch, dropout_key):
            outputs, updates = state.apply_fn(
                model_variables(cast_floating(params, compute_dtype), state.batch_stats),
                cast_floating(batch["x"], compute_dtype),
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            per_example = objective(cast_floating(outputs, jnp.float32), batch)
            means = {k: jnp.mean(v) for k, v in per_example.items()}
            # Statistics keep their stored dtype (float32) whatever the compute dtype of the module.
            batch_stats = jax.tree.map(
                lambda new, old: new.astype(old.dtype), updates.get("batch_stats", state.batch_stats), state.batch_stats
            )
            return means["loss"], (means, batch_stats)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if grad_accum_steps == 1:
            (_, (metrics, batch_stats)), grads = grad_fn(state.params, batch, step_key)
        else:

            def aux_and_grad(params, micro_batch, dropout_key):
                (_, aux), grads = grad_fn(params, micro_batch, dropout_key)
                return aux, grads

            (metrics, batch_stats), grads = accumulate_gradient(
                aux_and_grad, state.params, stride_rows(batch, grad_accum_steps), grad_accum_steps, rng=step_key
            )
        if axis_name is not None:
            grads, metrics, batch_stats = jax.lax.pmean((grads, metrics, batch_stats), axis_name)
        state = state.apply_gradients(grads=grads, batch_stats=batch_stats, rng=rng)
        return state, metrics

    return train_step


def make_eval_step(
    objective: Objective, axis_name: str | None = None, precision: str = "float32"
) -> EvalStep:
    """``eval_step(state, batch) -> sums``: mask-weighted sums of each metric plus ``'count'``.

    ``batch['mask']`` is float32 [B]; the model runs in ``precision`` and its outputs are cast to
    float32 before the objective, as in the train step.
    """
    compute_dtype = jnp.dtype(precision)

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        outputs = state.apply_fn(
            model_variables(cast_floating(state.params, compute_dtype), state.batch_stats),
            cast_floating(batch["x"], compute_dtype),
            train=False,
        )
        mask = batch["mask"]
        sums = {k: jnp.sum(v * mask) for k, v in objective(cast_floating(outputs, jnp.float32), batch).items()}
        sums["count"] = jnp.sum(mask)
        if axis_name is not None:
            sums = jax.lax.psum(sums, axis_name)
        return sums

    return eval_step


def make_train_chunk(
    train_step: TrainStep,
    constrain: Callable[[Batch], Batch] = lambda batch: batch,
) -> Callable[..., tuple[TrainState, Metrics]]:
    """``train_chunk(state, data, idx_CxB, num_steps=None) -> (state, metrics [C])``: steps in one ``lax.scan``.

    ``data`` is the whole device-resident training split; step ``i`` trains on rows ``idx_CxB[i]``.
    With ``num_steps`` (an int32 scalar, traced) only steps ``i < num_steps`` run; the rest leave the
    state as it is and give zero metrics, so chunks of every length up to C share one executable.
    ``constrain`` places each gathered batch (e.g. shards it across a mesh).
    """

    def train_chunk(
        state: TrainState, data: Batch, idx_CxB: jax.Array, num_steps: jax.Array | None = None
    ) -> tuple[TrainState, Metrics]:
        def step(state, idx_B):
            batch = constrain(jax.tree.map(lambda a: jnp.take(a, idx_B, axis=0), data))
            return train_step(state, batch)

        def body(state, i_and_idx_B):
            i, idx_B = i_and_idx_B
            if num_steps is None:
                return step(state, idx_B)

            def skip(state, idx_B):
                shapes = jax.eval_shape(step, state, idx_B)[1]
                return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            return jax.lax.cond(i < num_steps, step, skip, state, idx_B)

        return jax.lax.scan(body, state, (jnp.arange(idx_CxB.shape[0]), idx_CxB))

    return train_chunk
