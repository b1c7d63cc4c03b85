"""Batch normalization and inverted dropout from scratch (seed 001 slides 6-7, 004 slides 8-9).

Both are pure functions: batch norm maps ``(params, state, x)`` to ``(y, new_state)`` with the
learned ``params = {'gamma', 'beta'}`` and the running statistics ``state = {'mean', 'var'}`` as
separate pytrees; dropout takes an explicit PRNG key. ``nnjax.models.resmlp`` wraps them as flax
modules so they run inside the trainer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
State = dict[str, jax.Array]


def init_batch_norm(num_features: int, dtype: Any = jnp.float32) -> tuple[Params, State]:
    """``(params, state)`` for ``num_features`` features: gamma 1, beta 0, running mean 0, var 1."""
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    params = {"gamma": jnp.ones(num_features, dtype), "beta": jnp.zeros(num_features, dtype)}
    state = {"mean": jnp.zeros(num_features, jnp.float32), "var": jnp.ones(num_features, jnp.float32)}
    return params, state


def batch_statistics(x_NxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-feature mean and *biased* variance over every axis but the last: ([D], [D]).

    Computed in float32 (at least) with the two-pass formula ``mean((x - mu)^2)`` of the seed.
    """
    x = x_NxD.astype(jnp.promote_types(x_NxD.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean_D = jnp.mean(x, axis=axes)
    var_D = jnp.mean(jnp.square(x - mean_D), axis=axes)
    return mean_D, var_D


def batch_norm(
    params: Params,
    state: State,
    x: jax.Array,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[jax.Array, State]:
    """Batch normalization of ``x`` ([B, D] or [B, H, W, C]) over all axes but the feature (last) axis.

    Train mode normalises with the batch mean and biased variance
    ``x_hat = (x - mu) / sqrt(var + eps)``, returns ``y = gamma * x_hat + beta`` and the running
    statistics ``r <- momentum * r + (1 - momentum) * batch_stat``. The running variance tracks the
    *biased* batch variance, as ``flax.linen.BatchNorm`` and the seed's ``np.var`` do (PyTorch
    tracks the unbiased one). Eval mode normalises with the running statistics and returns
    ``state`` unchanged. ``eps`` defaults to flax's and PyTorch's 1e-5 (the seed uses 1e-8).
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm needs x of rank >= 2 ([B, ..., D]), got shape {x.shape}")
    num_features = x.shape[-1]
    if params["gamma"].shape != (num_features,) or state["mean"].shape != (num_features,):
        raise ValueError(
            f"batch_norm params/state must have shape ({num_features},) for x of shape {x.shape}; "
            f"got gamma {params['gamma'].shape}, mean {state['mean'].shape}"
        )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if train:
        mean_D, var_D = batch_statistics(x)
        new_state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * mean_D,
            "var": momentum * state["var"] + (1.0 - momentum) * var_D,
        }
    else:
        mean_D, var_D = state["mean"], state["var"]
        new_state = state
    x_hat = (x - mean_D) * jax.lax.rsqrt(var_D + eps)
    y = params["gamma"] * x_hat + params["beta"]
    return y.astype(jnp.result_type(x, params["gamma"])), new_state


def check_rate(rate: float, name: str = "rate") -> float:
    """``rate`` as a float if it is a drop probability in [0, 1); ValueError otherwise."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be a drop probability in [0, 1), got {rate}")
    return rate


def dropout(key: jax.Array, x: jax.Array, rate: float, train: bool) -> jax.Array:
    """Inverted dropout: zero each unit with probability ``rate``, scale kept ones by 1/(1-rate).

    ``E[dropout(x)] = x``, so evaluation (``train=False``) is the identity and needs no rescaling
    (the seed's ``keep_prob`` is ``1 - rate``). The mask is ``jax.random.bernoulli(key, 1 - rate,
    x.shape)``, exactly as ``flax.linen.Dropout`` draws it, so both give the same output for the
    same key. ``rate`` is a static Python float in [0, 1); rate 0 is the identity.
    """
    rate = check_rate(rate)
    if not train or rate == 0.0:
        return x
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, p=keep_prob, shape=x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))
