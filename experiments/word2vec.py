"""Seed 001 slide 8: skip-gram word embeddings (negative sampling) trained on Shakespeare.

    python -m experiments.word2vec                       # Shakespeare, fetched on first use
    python -m experiments.word2vec --text-file book.txt  # any local text
    python -m experiments.word2vec --load runs/word2vec/<time> --query king,love

The corpus (``nnjax.data.text.read_text_corpus``) is tokenized, words outside the ``--max-vocab``
most frequent are dropped, frequent words are subsampled, and the last ``--holdout-fraction`` of the
token stream is kept aside (``nnjax.tasks.word_embeddings.skipgram_corpus``): the reported held-out
loss and cosine-similarity gap (co-occurring pairs vs the same pairs with contexts shuffled) are
measured on its (centre, context) pairs. ``final_loss`` is the mean training loss over the last 10%
of steps. The embeddings and vocabulary are saved in the workdir (``embeddings.npz``, ``vocab.json``) so that ``--load DIR``
answers ``--query`` without retraining.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import jax
import numpy as np

from nnjax import cli
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.data.text import Vocabulary, read_text_corpus
from nnjax.errors import ConfigError
from nnjax.scratch import word2vec
from nnjax.tasks.word_embeddings import query_neighbours, skipgram_corpus

log = logging.getLogger("nnjax.experiments.word2vec")

EMBEDDINGS_FILE, VOCAB_FILE = "embeddings.npz", "vocab.json"


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """100-d SGNS embeddings of the 42 Shakespeare texts, window 5, 5 negatives, Adam."""

    text_file: str | None = option(None, "train on this UTF-8 text file instead of the 42 Shakespeare works")
    max_works: int = option(0, "Shakespeare works to train on; 0: all 42", minimum=0)
    load: str | None = option(None, "a training run's workdir: answer --query from its embeddings, no training")
    query: str = option("king,love,death,sword", "comma-separated words whose nearest neighbours are reported")
    neighbours: int = option(5, "nearest words reported per query word")
    max_vocab: int = option(10_000, "vocabulary size including <pad> and <unk>; rarer words are dropped (>= 3)")
    dim: int = option(100, "embedding width")
    window: int = option(5, "context words on each side of a centre word")
    negatives: int = option(5, "noise words per (centre, context) pair")
    steps: int = option(8000, "Adam steps")
    batch_size: int = option(1024, "(centre, context) pairs per step")
    learning_rate: float = option(3e-3, "Adam learning rate")
    subsample: float = option(1e-4, "Mikolov's frequent-word subsampling threshold t")
    holdout_fraction: float = option(
        0.05, "fraction of the token stream, its end, held out for the reported figures; in (0, 0.5)"
    )

    def validate(self) -> None:
        check_positive(self, "learning_rate", "subsample")
        if self.max_vocab < 3:
            raise ConfigError(f"--max-vocab must be >= 3 (two reserved ids plus a word), got {self.max_vocab}")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise ConfigError(f"--holdout-fraction must be in (0, 0.5), got {self.holdout_fraction}")
        if self.load and not os.path.isfile(os.path.join(self.load, EMBEDDINGS_FILE)):
            raise ConfigError(f"--load {self.load!r} has no {EMBEDDINGS_FILE}; pass a workdir of a training run")
        super().validate()


def main(config: Config) -> dict:
    if config.load:
        vocab = Vocabulary.from_json(os.path.join(config.load, VOCAB_FILE))
        embeddings = np.load(os.path.join(config.load, EMBEDDINGS_FILE))["embeddings"]
        return {"loaded": config.load, "vocab_size": len(vocab),
                "neighbours": query_neighbours(embeddings, vocab, config.query, config.neighbours)}

    corpus = read_text_corpus(config.text_file, config.max_works or None)
    rng = np.random.default_rng(config.seed)
    sg = skipgram_corpus(corpus.text, config.max_vocab, config.window, config.subsample, config.holdout_fraction, rng)
    vocab, pairs, heldout_pairs = sg.vocab, sg.train_pairs, sg.heldout_pairs
    log.info("%s: %d tokens, vocabulary %d, %d training pairs after subsampling, %d held-out pairs evaluated",
             corpus.source, sg.num_tokens, len(vocab), len(pairs), len(heldout_pairs))
    workdir = prepare_workdir(config, "word2vec")

    init_key, train_key, gap_key, loss_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    counts_V = np.asarray(vocab.counts)
    initial = word2vec.init_embeddings(init_key, len(vocab), config.dim)
    result = word2vec.train_sgns(
        train_key, pairs, counts_V, dim=config.dim, negatives=config.negatives,
        steps=config.steps, batch_size=config.batch_size, learning_rate=config.learning_rate, params=initial,
    )
    embeddings = np.asarray(result.params["in"])
    before = word2vec.pair_similarity_gap(initial["in"], heldout_pairs, gap_key)
    after = word2vec.pair_similarity_gap(embeddings, heldout_pairs, gap_key)
    heldout_loss = word2vec.heldout_loss(loss_key, result.params, heldout_pairs, counts_V, config.negatives)

    np.savez(os.path.join(workdir, EMBEDDINGS_FILE), embeddings=embeddings)
    vocab.to_json(os.path.join(workdir, VOCAB_FILE))
    loss_T = np.asarray(result.loss_T)
    tail = max(1, len(loss_T) // 10)
    return {
        "source": corpus.source,
        "tokens": sg.num_tokens,
        "vocab_size": len(vocab),
        "train_pairs": len(pairs),
        "first_loss": round(float(loss_T[0]), 6),
        "final_loss": round(float(loss_T[-tail:].mean()), 6),
        "heldout_loss": round(heldout_loss, 6),
        "heldout_cooccurring_cosine": round(after["cooccurring"], 4),
        "heldout_random_cosine": round(after["random"], 4),
        "heldout_gap": round(after["gap"], 4),
        "untrained_gap": round(before["gap"], 4),
        "neighbours": query_neighbours(embeddings, vocab, config.query, config.neighbours),
        "files": [EMBEDDINGS_FILE, VOCAB_FILE],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="word2vec"))
