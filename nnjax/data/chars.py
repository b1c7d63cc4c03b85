"""Character-level language-model data: a character vocabulary and next-character windows.

The text is split in order (the first ``1 - val_fraction`` of the characters train, the rest
validate, as nanoGPT's ``shakespeare_char``), the vocabulary is built from the training part only,
and each part is cut into windows of ``block_size + 1`` characters that overlap by one:
``x = text[i : i + T]`` and ``y = text[i + 1 : i + T + 1]`` for ``i = 0, T, 2T, ...``, so every
character of a part is a target exactly once (except the first).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

import numpy as np

from nnjax.data.registry import Dataset

UNK_CHAR = "\x00"  # id 0: characters the training text never contains


@dataclasses.dataclass(frozen=True)
class CharVocabulary:
    """Character <-> id map: id 0 stands for unknown characters, then the training characters sorted."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars or self.chars[0] != UNK_CHAR or len(set(self.chars)) != len(self.chars):
            raise ValueError("chars must be unique single characters starting with the unknown marker '\\x00'")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})
        codes = np.array([ord(c) for c in self.chars[1:]], np.uint32)
        order = np.argsort(codes)
        object.__setattr__(self, "_sorted_codes", codes[order])  # the code points with an id, ascending
        object.__setattr__(self, "_sorted_ids", (order + 1).astype(np.int32))  # and their ids

    @classmethod
    def build(cls, text: str) -> CharVocabulary:
        """The vocabulary of the distinct characters of ``text`` (plus the unknown id 0)."""
        return cls((UNK_CHAR, *sorted(set(text) - {UNK_CHAR})))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int32 [len(text)]: the id of every character (0 for characters outside the vocabulary)."""
        codes_N = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        if not len(self._sorted_codes):
            return np.zeros(len(codes_N), np.int32)
        pos_N = np.minimum(np.searchsorted(self._sorted_codes, codes_N), len(self._sorted_codes) - 1)
        return np.where(self._sorted_codes[pos_N] == codes_N, self._sorted_ids[pos_N], 0).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; unknown ids and id 0 decode to U+FFFD."""
        return "".join(self.chars[i] if 0 < i < len(self.chars) else "\ufffd" for i in map(int, ids))

    def contains(self, char: str) -> bool:
        """Whether ``char`` has an id of its own (is not read as unknown)."""
        return char != UNK_CHAR and char in self._index

    def id_of(self, char: str) -> int:
        """The id of one character; ValueError if it is not in the vocabulary."""
        if not self.contains(char):
            raise ValueError(f"character {char!r} is not in the vocabulary")
        return self._index[char]

    def to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"chars": "".join(self.chars)}, f)

    @classmethod
    def from_json(cls, path: str) -> CharVocabulary:
        with open(path, encoding="utf-8") as f:
            return cls(tuple(json.load(f)["chars"]))


def next_token_windows(ids_N: np.ndarray, block_size: int) -> dict[str, np.ndarray]:
    """``{'x', 'y'}`` int32 [W, block_size]: consecutive windows with ``y`` the next token of ``x``.

    W = (N - 1) // block_size; the tail that does not fill a window is dropped.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    num_windows = (len(ids_N) - 1) // block_size
    if num_windows < 1:
        raise ValueError(f"{len(ids_N)} tokens are too few for one window of {block_size} + 1")
    span = num_windows * block_size
    x = ids_N[:span].reshape(num_windows, block_size)
    y = ids_N[1 : span + 1].reshape(num_windows, block_size)
    return {"x": x.astype(np.int32), "y": y.astype(np.int32)}


def char_lm_dataset(
    text: str, block_size: int, val_fraction: float = 0.1, name: str = "text", source: str = "text"
) -> tuple[Dataset, CharVocabulary]:
    """A next-character ``Dataset`` (train windows, validation windows as ``test``) and its vocabulary."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(text) * (1.0 - val_fraction)))
    vocab = CharVocabulary.build(text[:cut])
    train = next_token_windows(vocab.encode(text[:cut]), block_size)
    val = next_token_windows(vocab.encode(text[cut:]), block_size)
    return Dataset(name, source, train, val, num_classes=len(vocab)), vocab
