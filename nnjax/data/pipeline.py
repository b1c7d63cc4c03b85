"""Deterministic batching of splits in memory or on disk: shuffles depend only on (seed, epoch).

A split is a dict of equal-length numpy arrays, or a ``RecordSplit`` (``nnjax.data.records``) whose rows
are read from disk by index; ``num_examples``, ``take``, ``split_validation`` and ``padded_batches``
accept both and give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from nnjax.data.records import RecordSplit

Split = dict[str, np.ndarray]
Rows = Split | RecordSplit  # a split in memory, or on disk


def predict_batched(fn: Callable[[Split, int], Any], split: Rows, batch_size: int) -> Any:
    """``fn(batch, i)`` on every example of ``split`` once; the outputs of real rows, concatenated [N, ...].

    Batch ``i`` is ``padded_batches``' i-th: always ``batch_size`` rows (so a jitted ``fn`` compiles
    once), padding rows dropped from its outputs (a pytree of arrays with leading axis ``batch_size``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs = []
    for i, batch in enumerate(padded_batches(split, batch_size)):
        real = batch.pop("mask") > 0
        outputs.append(jax.tree.map(lambda y: np.asarray(y)[real], fn(batch, i)))
    return jax.tree.map(lambda *ys: np.concatenate(ys), *outputs)


def num_examples(split: Rows) -> int:
    if isinstance(split, RecordSplit):
        return len(split)
    return len(next(iter(split.values())))


def take(split: Rows, indices: np.ndarray) -> Split:
    """Rows ``indices`` of every array in ``split``, in memory (read from disk for a ``RecordSplit``)."""
    if isinstance(split, RecordSplit):
        return split[indices]
    return {k: v[indices] for k, v in split.items()}


def num_validation(n: int, fraction: float) -> int:
    """How many of ``n`` examples ``split_validation`` holds out for ``fraction``."""
    return int(round(n * fraction))


def split_validation(split: Rows, fraction: float, seed: int) -> tuple[Rows, Rows]:
    """Hold out a seeded random ``fraction`` of ``split`` as validation: (train, validation), each in its original
    row order; a ``RecordSplit`` gives two ``RecordSplit`` views that stay on disk."""
    n = num_examples(split)
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val = num_validation(n, fraction)
    train_rows, val_rows = np.sort(order[n_val:]), np.sort(order[:n_val])
    if isinstance(split, RecordSplit):
        return split.subset(train_rows), split.subset(val_rows)
    return take(split, train_rows), take(split, val_rows)


def epoch_batch_indices(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """Shuffled example indices of one epoch as int32 [steps, batch_size]; the remainder is dropped."""
    steps = n // batch_size
    order = np.random.default_rng([seed, 0, epoch]).permutation(n)
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def padded_batches(split: Rows, batch_size: int) -> Iterator[Split]:
    """Every example once, in order, as batches of exactly ``batch_size`` rows.

    The last batch is padded by repeating row 0; ``batch['mask']`` (float32 [batch_size]) is 1 for
    real rows and 0 for padding, so weighted sums over the mask are exact.
    """
    n = num_examples(split)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = (idx < n).astype(np.float32)
        batch = take(split, np.where(idx < n, idx, 0))
        batch["mask"] = mask
        yield batch
