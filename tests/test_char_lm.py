"""Character LM data, the seed 000·13 experiment end to end, and its data-parallel training."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from flax.traverse_util import flatten_dict
from hypothesis import strategies as st

from experiments import char_lm
from nnjax import cli
from nnjax.data.chars import CharVocabulary, char_lm_dataset, next_token_windows
from nnjax.models.weights import load_params

TINY = ["--block-size", "8", "--d-model", "16", "--num-heads", "2", "--num-layers", "1", "--batch-size", "8",
        "--eval-batch-size", "64", "--log-every-steps", "2"]


def test_vocabulary_round_trip_and_unknowns(tmp_path):
    vocab = CharVocabulary.build("hello world")
    assert len(vocab) == 9 and vocab.chars[0] == "\x00"
    assert vocab.decode(vocab.encode("low rod")) == "low rod"
    np.testing.assert_array_equal(vocab.encode("hz\ud800"), [vocab.id_of("h"), 0, 0])  # a lone surrogate: unknown
    path = str(tmp_path / "vocab.json")
    vocab.to_json(path)
    assert CharVocabulary.from_json(path) == vocab
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.id_of("z")


@settings(max_examples=60, deadline=None)
@given(train=st.text(max_size=40), text=st.text(max_size=80), order=st.randoms(use_true_random=False))
def test_encode_gives_each_character_its_id_and_zero_to_the_rest(train, text, order):
    vocab = CharVocabulary.build(train)
    shuffled = CharVocabulary((vocab.chars[0], *order.sample(vocab.chars[1:], len(vocab) - 1)))  # any id order
    for v in (vocab, shuffled):
        expected = [v.chars.index(c) if c in v.chars[1:] else 0 for c in text]  # \x00 and unknowns: 0
        got = v.encode(text)
        assert got.dtype == np.int32 and got.tolist() == expected


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 200), block=st.integers(1, 20))
def test_windows_are_shifted_by_one(n, block):
    ids = np.arange(n, dtype=np.int32)
    if (n - 1) // block < 1:
        with pytest.raises(ValueError):
            next_token_windows(ids, block)
        return
    w = next_token_windows(ids, block)
    assert w["x"].shape == w["y"].shape == ((n - 1) // block, block)
    np.testing.assert_array_equal(w["y"], w["x"] + 1)  # on 0, 1, 2, ... the next token is +1
    np.testing.assert_array_equal(w["x"].ravel(), ids[: w["x"].size])  # consecutive, no gaps


def test_dataset_splits_in_order_and_builds_the_vocabulary_from_train_only():
    text = "abcabcabc" * 10 + "xyz" * 10
    data, vocab = char_lm_dataset(text, block_size=4, val_fraction=0.25)
    assert "x" not in vocab.chars and vocab.decode(data.train["x"][0]) == "abca"
    assert (data.test["x"] == 0).any(), "validation-only characters map to the unknown id"
    assert data.num_classes == len(vocab) == 4


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = "the king queen speak lord love death night day sword crown heart".split()
    lines = [f"{rng.choice(['KING.', 'QUEEN.'])}\n{' '.join(rng.choice(words, 6))}\n" for _ in range(300)]
    path = tmp_path_factory.mktemp("text") / "play.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def _unigram_and_bigram_nats(text: str, val_fraction: float = 0.1) -> tuple[float, float]:
    """Oracles in numpy, per character: the entropy of the training text's character frequencies, and the
    validation cross-entropy of the add-one bigram model counted on the training text."""
    cut = int(round(len(text) * (1.0 - val_fraction)))
    train, val = text[:cut], text[cut:]
    ids = {c: i for i, c in enumerate(sorted(set(train)))}
    freq = np.bincount([ids[c] for c in train]) / len(train)
    counts = np.ones((len(ids), len(ids)))
    np.add.at(counts, ([ids[c] for c in train[:-1]], [ids[c] for c in train[1:]]), 1)
    probs = counts / counts.sum(1, keepdims=True)
    pairs = [(ids[a], ids[b]) for a, b in zip(val, val[1:]) if a in ids and b in ids]
    return float(-(freq * np.log(freq)).sum()), float(-np.mean([np.log(probs[a, b]) for a, b in pairs]))


def test_learns_below_unigram_and_bigram_then_samples_and_beam_searches(text_file, tmp_path, capsys):
    """600 steps on the fixture play take the validation loss far below the unigram entropy (3.15 nats) and
    below a bigram model (1.17); untrained it is log(30) = 3.4, and at lr 1e-20 the test fails."""
    workdir = str(tmp_path / "run")
    argv = ["--text-file", text_file, "--workdir", workdir, "--max-new-tokens", "12", *TINY,
            "--steps", "600", "--learning-rate", "1e-2", "--log-every-steps", "100"]
    assert cli.run(char_lm.main, char_lm.Config, argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with open(text_file, encoding="utf-8") as f:
        unigram, bigram = _unigram_and_bigram_nats(f.read())
    assert out["steps"] == 600
    assert out["val_loss"] < 0.5 * unigram and out["val_loss"] < bigram - 0.3, (out["val_loss"], unigram, bigram)
    np.testing.assert_allclose(out["val_bpc"], out["val_loss"] / np.log(2), atol=1e-3)
    for name in out["files"]:
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert len(out["samples"]) == 1 and out["samples"][0].startswith("\n") and len(out["samples"][0]) == 13

    sample = ["--sample", "--workdir", workdir, "--prompt", "KING.\\n", "--num-samples", "2", "--max-new-tokens", "5",
              "--top-k", "3", "--eos", "\\n"]
    assert cli.run(char_lm.main, char_lm.Config, sample) == 0
    samples = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"]
    assert len(samples) == 2 and all(s.startswith("KING.\n") and len(s) <= 11 for s in samples)

    beams = ["--sample", "--workdir", workdir, "--prompt", "KING.\\n", "--beam-size", "3"]
    assert cli.run(char_lm.main, char_lm.Config, beams) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"]
    assert 1 <= len(found) <= 3 and all(s.startswith("KING.\n") for s in found)
    assert all(s.endswith("\n") and len(s) > 6 or len(s) == 8 for s in found), "beams end at EOS or a full context"


def test_two_seeds_report_each_seeds_validation_and_keep_the_first_seeds_weights_and_samples(text_file, tmp_path, capsys):
    """The oracle is the one-seed run: seed 0 of ``--seeds 2`` has its validation loss, weights and samples."""
    runs = {}
    for seeds in (2, 1):
        workdir = str(tmp_path / f"seeds{seeds}")
        argv = ["--text-file", text_file, "--workdir", workdir, "--max-new-tokens", "6", *TINY, "--steps", "8",
                "--seeds", str(seeds)]
        assert cli.run(char_lm.main, char_lm.Config, argv) == 0
        runs[seeds] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    together, alone = runs[2], runs[1]
    for key in ("val_loss", "val_bpc", "val_accuracy"):
        np.testing.assert_allclose(together[f"{key}_per_seed"][0], alone[key], atol=2e-4, err_msg=key)
        assert together[key] == pytest.approx(np.mean(together[f"{key}_per_seed"]), abs=1e-4)
    assert "test_loss" not in together and together["num_params"] == alone["num_params"]
    assert together["samples"] == alone["samples"]
    first, one = (load_params(str(tmp_path / name / "lm.msgpack")) for name in ("seeds2", "seeds1"))
    for name, value in flatten_dict(one, sep="/").items():
        if not name.endswith("key/bias"):  # zero gradient in exact arithmetic: Adam's steps follow rounding noise
            np.testing.assert_allclose(flatten_dict(first, sep="/")[name], value, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sample"], "--workdir"),
        (["--d-model", "10", "--num-heads", "4"], "divisible"),
        (["--eos", "ab"], "--eos"),
        (["--top-p", "0"], "--top-p"),
        (["--sample", "--workdir", "/nonexistent/run"], "not found"),
    ],
)
def test_config_errors(argv, message, capsys):
    assert cli.run(char_lm.main, char_lm.Config, argv) == 2
    assert message in capsys.readouterr().err
