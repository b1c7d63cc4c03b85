"""Seed 001 slide 12: a bag-of-words sentiment analyzer that learns (the slide's never updates its weights).

    python -m experiments.sentiment_bow

The slide's model, trained: word embeddings (vocabulary 5,000, width 100) pooled over each text
(here their mean over the real tokens) -> Dense(64) ReLU -> Dense(1) with sigmoid binary
cross-entropy; batch 32 as on the slide, Adam 1e-3 through ``nnjax.tasks.fit``. The slide's 10
epochs overfit the 8,197 training snippets (validation loss 0.49 after epoch 1, 1.40 after 10), so
the defaults are 3 epochs with dropout 0.5 on the pooled embedding, chosen on the validation
split (``--epochs 10 --dropout 0`` runs the slide's schedule). Data and the slide-13 evaluation
(accuracy, precision, recall, F1, ``confusion_matrix.png``) are ``nnjax.tasks.text_classification``'s,
as for ``experiments.sentiment_lstm``.
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli, losses
from nnjax.config import option
from nnjax.models.text_classifiers import BagOfWords
from nnjax.tasks import fit
from nnjax.tasks.text_classification import SentimentConfig, binary_test_report, load_data


@dataclasses.dataclass(frozen=True)
class Config(SentimentConfig):
    """Mean word embedding (5,000 x 100), dropout 0.5 -> Dense(64) ReLU -> Dense(1); Adam 1e-3, batch 32, 3 epochs."""

    epochs: int = 3
    vocab_size: int = 5_000
    embed_dim: int = option(100, "word-embedding width")
    hidden: int = option(64, "units of the ReLU layer")
    dropout: float = option(0.5, "dropout rate on the pooled embedding, in [0, 1)")


def main(config: Config) -> dict:
    data, _ = load_data(config)
    model = BagOfWords(config.vocab_size, config.embed_dim, config.hidden, config.dropout)
    result = fit(config, model, data, losses.binary_classification, experiment="sentiment_bow", multi_seed=True)
    return binary_test_report(result, data, config.eval_batch_size)


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="sentiment_bow"))
