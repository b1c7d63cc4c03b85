"""Seed 004 slide 15: sentiment analysis with a transformer, as ``pipeline("sentiment-analysis")`` does.

    python -m experiments.sentiment_transformer
    python -m experiments.sentiment_transformer --weights runs/.../classifier.msgpack \\
        --predict "I love this product! It's amazing!|This movie was terrible and a waste of time."

The slide downloads a pretrained model from the Hugging Face hub, which cannot happen offline.
Here the same pipeline -- tokenize -> transformer encoder -> pooled classifier -> probability --
is nnjax's own ``TransformerClassifier`` (pre-LayerNorm encoder, masked mean pooling, Dense(1);
``--norm post --activation relu --positional sinusoidal`` gives the encoder of seeds 000·5 / 001·11)
trained from scratch through ``nnjax.tasks.fit`` on the Rotten Tomatoes snippets that
``experiments.sentiment_lstm`` uses (same data, split and slide-13 evaluation of
``nnjax.tasks.text_classification``: accuracy, precision, recall, F1, ``confusion_matrix.png``). Training writes ``classifier.msgpack`` (the
params, ``nnjax.models.weights``) and ``vocab.json`` into the run directory. ``--seeds N`` trains N
classifiers at once and reports each score's mean, ``_std`` and ``_per_seed``; the weights are the first seed's.

Inference mode: ``--weights PATH --predict "text|text|..."`` loads a local weights file (and the
``vocab.json`` beside it, or ``--vocab``) into a classifier of the configured sizes -- pass the
size flags used in training -- and prints each ``|``-separated text's label and positive-class
probability; nothing is trained.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np

from nnjax import cli, losses
from nnjax.config import check_divisible, option
from nnjax.data.sentiment import CLASS_NAMES, encode_texts
from nnjax.data.text import Vocabulary
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.models.transformer import ACTIVATIONS, NORMS, POOLINGS, POSITIONALS, TransformerClassifier
from nnjax.models.weights import load_params, save_params
from nnjax.tasks import fit, predict_probabilities
from nnjax.tasks.text_classification import SentimentConfig, binary_test_report, load_data
from nnjax.train.runner import seed_states

WEIGHTS_FILE, VOCAB_FILE = "classifier.msgpack", "vocab.json"


@dataclasses.dataclass(frozen=True)
class Config(SentimentConfig):
    """Transformer encoder (2 pre-LN blocks, d_model 64, 4 heads, d_ff 128) -> mean pool -> Dense(1); Adam 1e-3, batch 32, 2 epochs."""

    epochs: int = 2
    max_len: int = 64
    d_model: int = option(64, "token-embedding and encoder width (divisible by --num-heads)")
    num_heads: int = option(4, "attention heads per encoder block")
    num_layers: int = option(2, "encoder blocks")
    d_ff: int = option(128, "hidden width of each block's MLP")
    dropout: float = option(0.1, "dropout rate on attention weights, residual branches, embeddings and the pooled vector")
    pooling: str = option("mean", "mean of the real tokens' states, or cls (position 0's)", choices=POOLINGS)
    norm: str = option("pre", "LayerNorm before (pre) or after (post: seed 001·11's block) each sublayer", choices=NORMS)
    activation: str = option("gelu", "activation of each block's MLP", choices=tuple(ACTIVATIONS))
    positional: str = option("learned", "position embeddings: learned, or sinusoidal (seed 000·5's)", choices=POSITIONALS)
    weights: str | None = option(None, "a classifier.msgpack to load for --predict (inference mode; give the size flags "
                                       "used in training)")
    vocab: str | None = option(None, "the vocab.json of --weights; default: vocab.json beside --weights")
    predict: str | None = option(None, "'|'-separated texts to classify with --weights; nothing is trained")

    def validate(self) -> None:
        super().validate()
        check_divisible(self, "d_model", "num_heads")
        if (self.weights is None) != (self.predict is None):
            raise ConfigError("--weights and --predict go together (inference mode); pass both or neither")
        if self.predict is not None and not self.texts():
            raise ConfigError(f"--predict needs at least one non-empty '|'-separated text, got {self.predict!r}")

    def texts(self) -> list[str]:
        """The ``--predict`` texts."""
        return [t.strip() for t in (self.predict or "").split("|") if t.strip()]


def make_model(config: Config) -> TransformerClassifier:
    return TransformerClassifier(
        config.vocab_size, config.max_len, config.d_model, config.num_heads, config.num_layers, config.d_ff,
        config.dropout, num_outputs=1, pooling=config.pooling, norm=config.norm, activation=config.activation,
        positional=config.positional,
    )


def predict(config: Config) -> dict:
    """Inference mode: positive-class probabilities of the ``--predict`` texts under the ``--weights`` file."""
    vocab_path = config.vocab or os.path.join(os.path.dirname(os.path.abspath(config.weights)), VOCAB_FILE)
    if not os.path.isfile(vocab_path):
        raise DataUnavailableError(f"vocabulary {vocab_path} does not exist; pass --vocab (the vocab.json written with the weights)")
    vocab = Vocabulary.from_json(vocab_path)
    if len(vocab) > config.vocab_size:
        raise ConfigError(f"--vocab-size {config.vocab_size} is smaller than the {len(vocab)} tokens of {vocab_path}")
    texts = config.texts()
    ids_NxT = encode_texts(texts, vocab, config.max_len)
    model = make_model(config)
    like = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids_NxT[:1])["params"]
    try:
        params = load_params(config.weights, like=like)
    except ValueError as e:
        raise ConfigError(f"{e} (pass the size flags the weights were trained with)") from e
    probs_N = predict_probabilities(model.apply, params, ids_NxT, batch_size=len(texts))
    return {
        "predictions": [
            {"text": t, "label": CLASS_NAMES[int(p >= 0.5)], "probability_positive": round(float(p), 4)}
            for t, p in zip(texts, probs_N)
        ],
        "weights": config.weights,
    }


def main(config: Config) -> dict:
    if config.weights is not None:
        return predict(config)
    data, vocab = load_data(config)
    result = fit(config, make_model(config), data, losses.binary_classification, experiment="sentiment_transformer",
                 multi_seed=True)
    workdir = result.summary["workdir"]
    params = seed_states(result.state, config.seeds)[0].params
    save_params(os.path.join(workdir, WEIGHTS_FILE), params)
    vocab.to_json(os.path.join(workdir, VOCAB_FILE))
    out = binary_test_report(result, data, config.eval_batch_size)
    num_params = sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(params))
    return {**out, "num_params": num_params, "weights": WEIGHTS_FILE, "vocab": VOCAB_FILE}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="sentiment_transformer"))
