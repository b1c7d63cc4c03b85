"""Data set transforms: class subsets and source/target task splits (transfer learning), binarised
images fixed once or redrawn every training step (Bernoulli-likelihood models such as the flow VAE)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from nnjax.data.registry import Dataset, Split
from nnjax.errors import ConfigError

BINARIZE = ("threshold", "dynamic")
BINARIZE_SEED = 20240102  # fixed: the once-drawn binary test images never depend on a run's --seed


def class_subset(split: Split, lo: int, hi: int) -> Split:
    """The examples with ``lo <= y < hi``, labels shifted to ``0 .. hi - lo - 1``."""
    keep = (split["y"] >= lo) & (split["y"] < hi)
    return {"x": split["x"][keep], "y": split["y"][keep] - lo}


def split_tasks(data: Dataset, split_class: int, target_labels: int, seed: int) -> tuple[Dataset, Dataset]:
    """(source, target) tasks: classes below/above ``split_class``; the target keeps ``target_labels``
    random training examples (``seed``) and its whole test split."""
    if not 1 <= split_class < data.num_classes - 1:
        raise ConfigError(f"--split-class must be in [1, {data.num_classes - 2}] for {data.num_classes} classes, got {split_class}")
    source = Dataset(f"{data.name}[<{split_class}]", data.source, class_subset(data.train, 0, split_class),
                     class_subset(data.test, 0, split_class), split_class)
    target_train = class_subset(data.train, split_class, data.num_classes)
    n = len(target_train["y"])
    if target_labels > n:
        raise ConfigError(f"--target-labels must be <= {n} (target training examples), got {target_labels}")
    few = np.sort(np.random.default_rng(seed).permutation(n)[:target_labels])
    target = Dataset(f"{data.name}[>={split_class}]x{target_labels}", data.source,
                     {k: v[few] for k, v in target_train.items()},
                     class_subset(data.test, split_class, data.num_classes), data.num_classes - split_class)
    return source, target


def binarized(data: Dataset, binarize: str) -> Dataset:
    """``data`` with 0/1 images: thresholded at 0.5, or (``'dynamic'``) one fixed Bernoulli draw per image
    (``BINARIZE_SEED``), the grey levels kept as ``'x_prob'`` in the training split for fresh draws during
    training (``redraw_binary``)."""
    if binarize not in BINARIZE:
        raise ConfigError(f"--binarize must be one of {BINARIZE}, got {binarize!r}")
    if binarize == "threshold":
        return dataclasses.replace(
            data,
            train={**data.train, "x": (data.train["x"] > 0.5).astype(np.float32)},
            test={**data.test, "x": (data.test["x"] > 0.5).astype(np.float32)},
        )
    rng = np.random.default_rng(BINARIZE_SEED)

    def draw(x: np.ndarray) -> np.ndarray:
        return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)

    return dataclasses.replace(
        data,
        train={**data.train, "x": draw(data.train["x"]), "x_prob": data.train["x"]},
        test={**data.test, "x": draw(data.test["x"])},
    )


def redraw_binary(key: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Dynamic binarisation (a trainer ``augment``): ``x ~ Bernoulli(x_prob)``, fresh for every step."""
    x = jax.random.bernoulli(key, batch["x_prob"]).astype(batch["x"].dtype)
    return {**batch, "x": x}
