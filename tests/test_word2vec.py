"""Skip-gram negative sampling: pairs, sampler, loss/gradient oracles, training effect and the demo CLI."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from experiments import word2vec as demo
from nnjax import cli
from nnjax.data.text import Vocabulary
from nnjax.errors import ConfigError
from nnjax.scratch import word2vec
from nnjax.tasks.word_embeddings import query_neighbours, skipgram_corpus


@settings(deadline=None, max_examples=25)
@given(st.lists(st.integers(0, 9), max_size=14), st.integers(1, 4), st.booleans())
def test_skipgram_pairs_match_loop(ids, window, with_docs):
    docs = [i // 5 for i in range(len(ids))] if with_docs else None
    expected = sorted(
        (ids[t], ids[c])
        for t in range(len(ids))
        for c in range(max(0, t - window), min(len(ids), t + window + 1))
        if c != t and (docs is None or docs[t] == docs[c])
    )
    pairs = word2vec.skipgram_pairs(np.array(ids, dtype=np.int32), window, None if docs is None else np.array(docs))
    assert pairs.dtype == np.int32 and pairs.shape == (len(expected), 2)
    assert sorted(map(tuple, pairs.tolist())) == expected


def test_sampler_follows_unigram_to_three_quarters():
    counts = np.array([0, 1000, 300, 50, 5, 0, 120])
    probs = word2vec.negative_sampling_probs(counts)
    expected = np.where(counts > 0, counts.astype(float) ** 0.75, 0.0)
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-6)
    n = 200_000
    draws = np.asarray(word2vec.sample_negatives(jax.random.PRNGKey(0), jnp.asarray(probs), (n // 4, 4)))
    assert draws.dtype == np.int32
    freq = np.bincount(draws.ravel(), minlength=len(counts)) / n
    assert freq[counts == 0].sum() == 0
    sigma = np.sqrt(probs * (1 - probs) / n)
    assert (np.abs(freq - probs) <= 5 * sigma + 1e-12).all(), (freq, probs)


def test_subsample_keep_prob_closed_form():
    counts = np.array([0, 1, 10, 10_000])
    keep = word2vec.subsample_keep_prob(counts, threshold=1e-3)
    f = counts / counts.sum()
    np.testing.assert_allclose(keep[1:], np.minimum(1, np.sqrt(1e-3 / f[1:]) + 1e-3 / f[1:]))
    assert keep[0] == 0 and keep[1] == 1 and keep[3] < 0.05


def random_batch(seed, vocab=7, dim=4, batch=6, k=3, scale=1.0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = {"in": scale * jax.random.normal(ks[0], (vocab, dim)), "out": scale * jax.random.normal(ks[1], (vocab, dim))}
    return (params, jax.random.randint(ks[2], (batch,), 0, vocab), jax.random.randint(ks[3], (batch,), 0, vocab),
            jax.random.randint(ks[4], (batch, k), 0, vocab))


def reference_loss(params, centers, contexts, negatives):
    """SGNS as binary cross-entropy: label 1 for the observed context, 0 for each negative."""
    v = params["in"][centers]
    logits = jnp.concatenate([jnp.sum(v * params["out"][contexts], -1)[:, None],
                              jnp.einsum("bd,bkd->bk", v, params["out"][negatives])], axis=1)
    labels = jnp.zeros_like(logits).at[:, 0].set(1.0)
    return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels), axis=1))


MANUAL = jax.jit(word2vec.sgns_value_and_grad)
REFERENCE = jax.jit(jax.value_and_grad(reference_loss))
LOSS = jax.jit(word2vec.sgns_loss)


@settings(deadline=None, max_examples=10)
@given(st.integers(0, 1000))
def test_sgns_loss_and_manual_gradient_match_oracle(seed):
    params, centers, contexts, negatives = random_batch(seed)  # 7 ids, 6 rows: repeated ids guaranteed
    loss, grads = MANUAL(params, centers, contexts, negatives)
    ref_loss, ref_grads = REFERENCE(params, centers, contexts, negatives)
    chex.assert_trees_all_close(loss, ref_loss, rtol=1e-5)
    chex.assert_trees_all_close(LOSS(params, centers, contexts, negatives), ref_loss, rtol=1e-5)
    chex.assert_trees_all_close(grads, ref_grads, rtol=1e-4, atol=1e-6)


def test_sgns_loss_numerical_gradient_and_stability():
    params, centers, contexts, negatives = random_batch(3)
    check_grads(lambda p: word2vec.sgns_loss(p, centers, contexts, negatives), (params,), order=1,
                modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2)
    huge = jax.tree.map(lambda x: 1e3 * x, params)
    loss, grads = word2vec.sgns_value_and_grad(huge, centers, contexts, negatives)
    assert np.isfinite(loss) and np.isfinite(word2vec.sgns_loss(huge, centers, contexts, negatives))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def topic_corpus(seed=0, sentences=400, length=8, words_per_topic=10):
    """Sentences each drawn from one of two disjoint vocabularies (ids 2..11 and 12..21), doc id per token."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, sentences)
    ids = 2 + topic[:, None] * words_per_topic + rng.integers(0, words_per_topic, (sentences, length))
    docs = np.repeat(np.arange(sentences), length)
    return ids.reshape(-1).astype(np.int32), docs, 2 + 2 * words_per_topic


def test_training_separates_topics():
    ids, docs, vocab_size = topic_corpus(0)
    pairs = word2vec.skipgram_pairs(ids, 3, docs)
    counts = np.bincount(ids, minlength=vocab_size)
    untrained = word2vec.init_embeddings(jax.random.PRNGKey(1), vocab_size, 16)
    result = word2vec.train_sgns(jax.random.PRNGKey(0), pairs, counts, dim=16, negatives=3, steps=300,
                                 batch_size=128, learning_rate=3e-2, manual_grad=True, params=untrained)
    held_ids, held_docs, _ = topic_corpus(1)
    held_pairs = word2vec.skipgram_pairs(held_ids, 3, held_docs)
    before = word2vec.pair_similarity_gap(untrained["in"], held_pairs, jax.random.PRNGKey(1))
    after = word2vec.pair_similarity_gap(result.params["in"], held_pairs, jax.random.PRNGKey(1))
    assert result.loss_T[-20:].mean() < 0.8 * result.loss_T[0]
    assert abs(before["gap"]) < 0.15  # ~0.05: co-occurring pairs repeat a word more often
    assert after["gap"] > 0.3 and after["gap"] > before["gap"] + 0.3, (before, after)
    # Nearest neighbours of a topic-0 word are topic-0 words.
    neighbours, sims = word2vec.nearest_neighbours(result.params["in"], 2, k=5, exclude=(0, 1))
    assert ((neighbours >= 2) & (neighbours < 12)).all() and (np.diff(sims) <= 0).all()


def test_nearest_neighbours_matches_brute_force():
    emb = np.random.default_rng(0).normal(size=(12, 5))
    ids, sims = word2vec.nearest_neighbours(emb, 4, k=3, exclude=(0,))
    cos = [(float(emb[4] @ emb[j] / np.linalg.norm(emb[4]) / np.linalg.norm(emb[j])), j) for j in range(1, 12) if j != 4]
    best = sorted(cos, reverse=True)[:3]
    assert ids.tolist() == [j for _, j in best]
    np.testing.assert_allclose(sims, [c for c, _ in best], rtol=1e-9)


def _window_pairs(words: list[str], window: int) -> list[tuple[str, str]]:
    return sorted((words[t], words[c]) for t in range(len(words))
                  for c in range(max(0, t - window), min(len(words), t + window + 1)) if c != t)


def test_skipgram_corpus_drops_rare_words_holds_out_the_tail_and_subsamples():
    text = "a b a c a b d a b a c e a b a a"  # a x8, b x4, c x2, d x1, e x1 (d/e tie, alphabetically d first)
    kept = [w for w in text.split() if w in "abc"]  # max_vocab 5 = <pad>, <unk>, a, b, c
    corpus = skipgram_corpus(text, max_vocab=5, window=2, subsample=1.0, holdout_fraction=0.25,
                             rng=np.random.default_rng(0))
    words = lambda pairs: sorted((corpus.vocab.tokens[a], corpus.vocab.tokens[b]) for a, b in pairs)  # noqa: E731
    assert corpus.vocab.tokens == ("<pad>", "<unk>", "a", "b", "c") and corpus.num_tokens == 16
    split = int(len(kept) * 0.75)
    assert words(corpus.train_pairs) == _window_pairs(kept[:split], 2)  # subsample 1.0 keeps every word
    assert words(corpus.heldout_pairs) == _window_pairs(kept[split:], 2)
    # A low threshold subsamples: token t of the training part survives where the documented draw
    # rng.random(n)[t] < min(1, sqrt(t/f) + t/f) of its word's share f of the in-vocabulary words.
    long_text = " ".join([text] * 50)
    sub = skipgram_corpus(long_text, 5, 2, 1e-2, 0.25, np.random.default_rng(0))
    long_kept = kept * 50
    train = long_kept[: int(len(long_kept) * 0.75)]
    share = {w: long_kept.count(w) / len(long_kept) for w in "abc"}
    keep = [min(1.0, np.sqrt(1e-2 / share[w]) + 1e-2 / share[w]) for w in train]
    survivors = [w for w, u, p in zip(train, np.random.default_rng(0).random(len(train)), keep) if u < p]
    assert 0 < len(survivors) < 0.5 * len(train)
    assert words(sub.train_pairs) == _window_pairs(survivors, 2)
    few = skipgram_corpus(long_text, 5, 2, 1.0, 0.25, np.random.default_rng(0), max_heldout_pairs=7)
    full = skipgram_corpus(long_text, 5, 2, 1.0, 0.25, np.random.default_rng(0))
    assert len(few.heldout_pairs) == 7 and set(map(tuple, few.heldout_pairs.tolist())) <= set(
        map(tuple, full.heldout_pairs.tolist()))
    with pytest.raises(ConfigError, match="too few words"):
        skipgram_corpus("a b", 5, 2, 1.0, 0.5, np.random.default_rng(0))


def test_query_neighbours_lowercases_skips_unknown_words_and_matches_brute_force():
    vocab = Vocabulary(("<pad>", "<unk>", "king", "queen", "sword", "war"), (0, 0, 4, 3, 2, 1))
    emb = np.random.default_rng(1).normal(size=(6, 4))
    out = query_neighbours(emb, vocab, " King , nosuchword,war", k=2)
    assert list(out) == ["king", "war"]
    for word, found in out.items():
        i = vocab.id_of(word)
        cos = {j: emb[i] @ emb[j] / np.linalg.norm(emb[i]) / np.linalg.norm(emb[j]) for j in range(2, 6) if j != i}
        best = sorted(cos, key=cos.get, reverse=True)[:2]
        assert found == [[vocab.tokens[j], round(float(cos[j]), 4)] for j in best]


def test_demo_trains_on_text_file_then_answers_queries_from_saved_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    topics = [["king", "queen", "crown", "throne", "court"], ["sword", "blood", "battle", "death", "war"]]
    lines = [" ".join(rng.choice(topics[rng.integers(2)], 8)).capitalize() + "." for _ in range(300)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    workdir = tmp_path / "run"
    argv = ["--text-file", str(tmp_path / "corpus.txt"), "--workdir", str(workdir), "--dim", "8", "--window", "2",
            "--steps", "200", "--batch-size", "64", "--learning-rate", "0.03", "--query", "king,nosuchword",
            "--neighbours", "3", "--subsample", "1.0", "--holdout-fraction", "0.2"]
    assert cli.run(demo.main, demo.Config, argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["vocab_size"] == 12 and out["tokens"] == 300 * 8
    assert out["final_loss"] < out["first_loss"]
    assert out["heldout_gap"] > out["untrained_gap"]
    assert out["first_loss"] == round(6 * np.log(2), 6)  # zero output vectors: every score is 0
    assert out["heldout_loss"] < 0.8 * out["first_loss"]
    assert set(out["neighbours"]) == {"king"} and len(out["neighbours"]["king"]) == 3
    assert (workdir / "embeddings.npz").exists() and (workdir / "vocab.json").exists()

    assert cli.run(demo.main, demo.Config, ["--load", str(workdir), "--query", "king", "--neighbours", "3"]) == 0
    loaded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert loaded["neighbours"] == out["neighbours"]


def test_demo_rejects_bad_flags(tmp_path, capsys):
    assert cli.run(demo.main, demo.Config, ["--window", "0"]) == 2
    assert cli.run(demo.main, demo.Config, ["--load", str(tmp_path)]) == 2
    assert "--load" in capsys.readouterr().err
