"""Pure metric functions of arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def accuracy(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example 0/1 correctness of the arg-max prediction: float32 [B]."""
    return (jnp.argmax(logits_BxK, axis=-1) == labels_B).astype(jnp.float32)
