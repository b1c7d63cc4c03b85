"""Data sets as numpy splits in memory or as records on disk (``nnjax.data.records``), plus deterministic batching."""

from nnjax.data.pipeline import (
    epoch_batch_indices,
    num_examples,
    num_validation,
    padded_batches,
    predict_batched,
    split_validation,
    take,
)
from nnjax.data.prefetch import prefetch
from nnjax.data.registry import DIGITS_AUTO, Dataset, available, load_dataset, register
from nnjax.data.segmentation import (
    dihedral_augment,
    load_nuclei,
    load_shapes,
    synthetic_shapes,
)

__all__ = [
    "DIGITS_AUTO",
    "Dataset",
    "available",
    "dihedral_augment",
    "epoch_batch_indices",
    "load_dataset",
    "load_nuclei",
    "load_shapes",
    "num_examples",
    "num_validation",
    "padded_batches",
    "predict_batched",
    "prefetch",
    "register",
    "split_validation",
    "synthetic_shapes",
    "take",
]
