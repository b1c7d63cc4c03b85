"""Pure loss functions.

Trainer objectives have the signature ``objective(outputs, batch) -> dict[str, Array[B]]``: per-example
values with at least ``'loss'``; the trainer averages them (exactly, with padding masks, in evaluation).
"""

from __future__ import annotations

import jax
import optax

from nnjax import metrics


def softmax_cross_entropy(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example categorical cross-entropy of integer labels under softmax(logits): [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxK, labels_B)


def classification(logits_BxK: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Trainer objective for K-way classification: per-example loss and accuracy.

    The loss is cross-entropy against the integer labels ``batch['y']``, or against the soft
    targets ``batch['y_soft']`` [B, K] when present (mixup / cutmix); accuracy is always against
    ``batch['y']``.
    """
    if "y_soft" in batch:
        loss = optax.softmax_cross_entropy(logits_BxK, batch["y_soft"])
    else:
        loss = softmax_cross_entropy(logits_BxK, batch["y"])
    return {"loss": loss, "accuracy": metrics.accuracy(logits_BxK, batch["y"])}
