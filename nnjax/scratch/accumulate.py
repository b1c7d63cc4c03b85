"""Gradient accumulation by hand: the mean gradient of a batch, computed in micro-batches.

Seed 002 slide 2 scales each micro-batch loss by 1/k and sums the backward passes; slide 13 writes
the resulting step, θ ← θ - η · (1/N) Σᵢ ∇Lᵢ(θ). ``accumulate_gradient`` does this inside one
``lax.scan`` (as big_vision's ``accumulate_gradient``), so only one micro-batch of activations is
alive at a time, and the result equals the gradient of the mean loss over the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Params = Any
Batch = Any
LossAndGrad = Callable[[Params, Batch], tuple[jax.Array, Params]]
LossAndGradWithKey = Callable[[Params, Batch, jax.Array], tuple[Any, Params]]


def split_microbatches(batch: Batch, num_micro: int) -> Batch:
    """Reshape every leaf of ``batch`` from [k·b, ...] to [k, b, ...] (k = ``num_micro``).

    Raises ``ValueError`` when the leaves disagree on their leading size or it is not a multiple of k.
    """
    if num_micro < 1:
        raise ValueError(f"num_micro must be >= 1, got {num_micro}")
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(batch)}
    if len(sizes) != 1:
        raise ValueError(f"batch leaves must share one leading (example) size, got sizes {sorted(sizes)}")
    (size,) = sizes
    if size % num_micro:
        raise ValueError(
            f"batch of {size} examples does not split into {num_micro} equal micro-batches; "
            f"use a batch size that is a multiple of {num_micro}"
        )
    return jax.tree.map(lambda a: a.reshape(num_micro, size // num_micro, *a.shape[1:]), batch)


def accumulate_gradient(
    loss_and_grad: LossAndGrad | LossAndGradWithKey,
    params: Params,
    batch: Batch,
    num_micro: int,
    rng: jax.Array | None = None,
) -> tuple[Any, Params]:
    """Mean loss and mean gradient over ``num_micro`` equal micro-batches of ``batch``.

    ``loss_and_grad(params, micro_batch) -> (mean loss, grads)`` is e.g.
    ``jax.value_and_grad(loss_fn)``; each leaf of ``batch`` [k·b, ...] is split into k micro-batches
    [b, ...]. Returns ``(loss, grads)`` equal to ``loss_and_grad(params, batch)`` up to float rounding
    when ``loss_fn`` is a mean over examples. The loss slot may be any pytree of arrays (e.g. a dict
    of metrics plus auxiliary state): every leaf is averaged over the micro-batches.

    With ``rng`` (a PRNG key), it is split into k keys and micro-batch i is evaluated as
    ``loss_and_grad(params, micro_batch_i, key_i)``, so each micro-batch gets its own dropout mask.
    """
    micro_KxB = split_microbatches(batch, num_micro)
    if rng is None:
        xs, call = micro_KxB, loss_and_grad
    else:
        xs, call = (micro_KxB, jax.random.split(rng, num_micro)), lambda p, x: loss_and_grad(p, *x)
    first = jax.tree.map(lambda a: a[0], xs)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(call, params, first))

    def add(total, x):
        return jax.tree.map(jnp.add, total, call(params, x)), None

    total, _ = jax.lax.scan(add, zeros, xs)
    return jax.tree.map(lambda t: t / num_micro, total)


def max_abs_difference(tree_a: Any, tree_b: Any) -> float:
    """Largest absolute elementwise difference between two pytrees of the same structure."""
    return float(max(jnp.max(jnp.abs(a - b)) for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b))))


def accumulation_gap(
    loss_fn: Callable[[Params, Batch], jax.Array],
    params: Params,
    batch: Batch,
    tx: optax.GradientTransformation,
    num_micro: int,
) -> dict[str, float]:
    """How far one accumulated update lands from one update on the whole batch (max |Δparams|).

    Reference: one step of ``tx`` on ``jax.grad(loss_fn)(params, batch)``. Compared:
    ``'multisteps'`` -- ``optax.MultiSteps(tx, num_micro)`` (what ``nnjax.optim.accumulate``
    builds) called once per micro-batch;
    ``'scan'`` -- one step of ``tx`` on ``accumulate_gradient``'s mean gradient.
    All three are computed in one jitted function.
    """
    multi = optax.MultiSteps(tx, every_k_schedule=num_micro)

    def one_step(params, grads):
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)

    def micro_step(carry, micro_batch):
        stepped, state = carry
        updates, state = multi.update(jax.grad(loss_fn)(stepped, micro_batch), state, stepped)
        return (optax.apply_updates(stepped, updates), state), None

    @jax.jit
    def updated_params(params, batch):
        reference = one_step(params, jax.grad(loss_fn)(params, batch))
        scanned = one_step(params, accumulate_gradient(jax.value_and_grad(loss_fn), params, batch, num_micro)[1])
        (stepped, _), _ = jax.lax.scan(micro_step, (params, multi.init(params)), split_microbatches(batch, num_micro))
        return reference, scanned, stepped

    reference, scanned, stepped = updated_params(params, batch)
    return {"multisteps": max_abs_difference(stepped, reference), "scan": max_abs_difference(scanned, reference)}
