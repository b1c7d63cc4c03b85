"""Data sets as in-memory numpy splits plus deterministic batching."""

from nnjax.data.pipeline import (
    epoch_batch_indices,
    num_examples,
    num_validation,
    padded_batches,
    split_validation,
    take,
)
from nnjax.data.prefetch import prefetch
from nnjax.data.registry import DIGITS_AUTO, Dataset, available, load_dataset, register

__all__ = [
    "DIGITS_AUTO",
    "Dataset",
    "available",
    "epoch_batch_indices",
    "load_dataset",
    "num_examples",
    "num_validation",
    "padded_batches",
    "prefetch",
    "register",
    "split_validation",
    "take",
]
