"""Skip-gram word embeddings of a text corpus (seed 001·8): the corpus pipeline and neighbour queries.

``skipgram_corpus`` turns a text into SGNS training data: it is tokenized (``nnjax.data.text``),
words outside the ``max_vocab`` most frequent are dropped, the last ``holdout_fraction`` of the
token stream is kept aside, frequent training words are subsampled and both parts become
(centre, context) pairs (``nnjax.scratch.word2vec``). ``query_neighbours`` answers nearest-word
queries from trained embeddings.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from nnjax.data.text import UNK_ID, Vocabulary, tokenize
from nnjax.errors import ConfigError
from nnjax.scratch import word2vec

log = logging.getLogger(__name__)

MAX_HELDOUT_PAIRS = 50_000  # a random subset of held-out pairs keeps the evaluation small


class SkipGramCorpus(NamedTuple):
    """SGNS data of one text: its vocabulary, its token count and (centre, context) id pairs int32 [P, 2]."""

    vocab: Vocabulary
    num_tokens: int  # words of the text, before dropping out-of-vocabulary ones
    train_pairs: np.ndarray  # [P, 2] from the subsampled training part
    heldout_pairs: np.ndarray  # [H, 2], H <= max_heldout_pairs, from the held-out tail, in stream order


def skipgram_corpus(
    text: str,
    max_vocab: int,
    window: int,
    subsample: float,
    holdout_fraction: float,
    rng: np.random.Generator,
    max_heldout_pairs: int = MAX_HELDOUT_PAIRS,
) -> SkipGramCorpus:
    """The SGNS training and held-out pairs of ``text``.

    The vocabulary (``max_vocab`` ids including ``<pad>``/``<unk>``) counts the whole text; its
    in-vocabulary ids are split in order, the first ``1 - holdout_fraction`` for training. Training
    tokens survive with ``word2vec.subsample_keep_prob(counts, subsample)``, then both parts give
    all pairs within ``window`` tokens; the held-out pairs are a random subset of at most
    ``max_heldout_pairs`` kept in order. ``rng`` draws the subsampling, then the subset.
    ``ConfigError`` when either part yields no pair.
    """
    tokens = tokenize(text)
    vocab = Vocabulary.build([tokens], max_size=max_vocab)
    ids_T = vocab.encode(tokens)
    ids_T = ids_T[ids_T != UNK_ID]
    split = int(len(ids_T) * (1.0 - holdout_fraction))
    train_T, heldout_T = ids_T[:split], ids_T[split:]
    keep_T = rng.random(len(train_T)) < word2vec.subsample_keep_prob(vocab.counts, subsample)[train_T]
    pairs = word2vec.skipgram_pairs(train_T[keep_T], window)
    heldout_pairs = word2vec.skipgram_pairs(heldout_T, window)
    heldout_pairs = heldout_pairs[np.sort(rng.permutation(len(heldout_pairs))[:max_heldout_pairs])]
    if len(pairs) == 0 or len(heldout_pairs) == 0:
        raise ConfigError(f"the text has too few words ({len(ids_T)} in the vocabulary) for --window "
                          f"{window} and --holdout-fraction {holdout_fraction}; use a longer text")
    return SkipGramCorpus(vocab, len(tokens), pairs, heldout_pairs)


def query_neighbours(embeddings_VxD: np.ndarray, vocab: Vocabulary, query: str, k: int) -> dict[str, list]:
    """``{word: [[neighbour, cosine], ...]}``: the ``k`` nearest words (cosine rounded to 4 places) of each
    comma-separated ``query`` word (lower-cased) in ``vocab``; others are skipped with a warning."""
    out = {}
    for word in (w.strip().lower() for w in query.split(",") if w.strip()):
        word_id = vocab.id_of(word)
        if word_id == UNK_ID:
            log.warning("query word %r is not in the vocabulary", word)
            continue
        ids, sims = word2vec.nearest_neighbours(embeddings_VxD, word_id, k, exclude=(0, 1))
        out[word] = [[vocab.tokens[i], round(float(s), 4)] for i, s in zip(ids, sims)]
    return out
