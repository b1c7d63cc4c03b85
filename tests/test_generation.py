"""Sampling and beam search (seed 000·13) against closed forms, exhaustive search and full forward passes."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.models.generation import (
    beam_search,
    filter_logits,
    generate,
    length_penalty,
    lm_beam_search,
    sample_logits,
)
from nnjax.models.transformer import TransformerLM


def test_filter_logits_top_k_and_top_p():
    probs = np.array([[0.5, 0.25, 0.15, 0.1]])
    logits = jnp.log(probs)
    kept = lambda out: np.isfinite(np.asarray(out))[0].tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False]  # 0.5 already reaches 0.5
    assert kept(filter_logits(logits, top_p=0.7)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.76)) == [True, True, True, False]
    assert kept(filter_logits(logits, top_k=2, top_p=0.9)) == [True, True, False, False]
    assert kept(filter_logits(logits[:, ::-1], top_k=1)) == [False, False, False, True]
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=0.0)


def test_sampling_follows_the_tempered_distribution():
    logits = jnp.array([[2.0, 1.0, 0.0, -1.0]])
    n = 20_000
    draw = jax.jit(jax.vmap(lambda key: sample_logits(key, logits, temperature=2.0)[0]))
    counts = np.bincount(np.asarray(draw(jax.random.split(jax.random.PRNGKey(0), n))), minlength=4)
    expected = np.asarray(jax.nn.softmax(logits[0] / 2.0))
    stderr = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(counts / n - expected) < 5 * stderr), (counts / n, expected)
    greedy = sample_logits(jax.random.PRNGKey(1), logits, temperature=0.0)
    assert int(greedy[0]) == 0
    top1 = jax.vmap(lambda key: sample_logits(key, logits, temperature=5.0, top_k=1)[0])(jax.random.split(jax.random.PRNGKey(2), 50))
    assert (np.asarray(top1) == 0).all()


# --- beam search against exhaustive search on a tiny vocabulary ------------------------------------

V, L, EOS = 4, 4, 0


def markov_step(table_LxVxV):
    """A decoder whose next-token logits depend on the last token and the step: state (last [N], t)."""

    def step(state, token_N):
        _, t = state
        return table_LxVxV[t, token_N], (token_N, t + 1)

    return step


def exhaustive_best(first_V, table_LxVxV, alpha):
    """Every sequence that ends at its first EOS or at length L, scored as beam search scores them."""
    scored = []
    for n in range(1, L + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1] or (n < L and seq[-1] != EOS):
                continue
            logp = jax.nn.log_softmax(first_V)[seq[0]]
            for t in range(1, n):
                logp += jax.nn.log_softmax(table_LxVxV[t - 1, seq[t - 1]])[seq[t]]
            scored.append((float(logp / length_penalty(n, alpha)), seq))
    return sorted(scored, reverse=True)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), alpha=st.sampled_from([0.0, 0.6, 1.0]))
def test_beam_search_equals_exhaustive_search(seed, alpha):
    """With enough beams to keep every prefix, beam search must return the exhaustive top 3, in order."""
    rng = np.random.default_rng(seed)
    table = jnp.asarray(rng.normal(size=(L + 1, V, V)) * 2, jnp.float32)
    first = jnp.asarray(rng.normal(size=(2, V)) * 2, jnp.float32)
    state = (jnp.zeros((2,), jnp.int32), jnp.int32(0))
    beams = _search(table, first, state, alpha)
    for b in range(2):
        best = exhaustive_best(first[b], table, alpha)[:3]
        np.testing.assert_allclose(np.asarray(beams.scores[b, :3]), [s for s, _ in best], rtol=1e-5)
        for i, (_, seq) in enumerate(best):
            assert tuple(np.asarray(beams.tokens[b, i, : beams.lengths[b, i]])) == seq


@functools.partial(jax.jit, static_argnums=3)
def _search(table, first, state, alpha):
    return beam_search(markov_step(table), state, first, beam_size=(V - 1) ** (L - 1), max_len=L, eos_id=EOS, alpha=alpha)


def test_beam_search_reorders_beams():
    """The first token that looks best leads nowhere good: a 2-beam search must switch to the other branch
    (the seed's beam search, which never reorders, keeps the greedy history)."""
    table = np.zeros((L + 1, V, V), np.float32)  # after tokens 1 and 3: uniform, nothing stands out
    table[:, 2, EOS] = 5.0  # after token 2, EOS is almost certain
    first = jnp.array([[-5.0, 1.0, 0.5, -5.0]])  # greedy picks 1 (p .62), but (2, EOS) has p .38 > .62 / 4
    beams = beam_search(
        markov_step(jnp.asarray(table)), (jnp.zeros((1,), jnp.int32), jnp.int32(0)), first, 2, L, EOS, alpha=0.0
    )
    assert tuple(np.asarray(beams.tokens[0, 0, : beams.lengths[0, 0]])) == (2, EOS)


# --- with a TransformerLM's KV cache -------------------------------------------------------------

LM = TransformerLM(vocab_size=6, block_size=10, d_model=16, num_heads=2, num_layers=1)


@pytest.fixture(scope="module")
def lm_params():
    return jax.jit(LM.init)(jax.random.PRNGKey(0), jnp.zeros((1, 10), jnp.int32))["params"]


def full_log_probs(params, ids_BxT):
    """Next-token log-probabilities [B, T, V] of one uncached forward pass over ids right-padded to the
    block size (one compiled shape; causality makes the padding irrelevant to earlier positions)."""
    ids_BxT = np.asarray(ids_BxT)
    padded = np.pad(ids_BxT, ((0, 0), (0, LM.block_size - ids_BxT.shape[1])))
    return np.asarray(_log_softmax_forward(params, padded))[:, : ids_BxT.shape[1]]


@jax.jit
def _log_softmax_forward(params, ids_BxT):
    return jax.nn.log_softmax(LM.apply({"params": params}, ids_BxT))


def log_prob(params, prompt, continuation):
    """log p(continuation | prompt) from a full (uncached) forward pass."""
    logp = full_log_probs(params, jnp.asarray(np.concatenate([prompt, continuation]))[None])[0]
    return float(sum(logp[len(prompt) - 1 + i, tok] for i, tok in enumerate(continuation)))


def test_lm_beam_scores_match_full_forward_passes(lm_params):
    """Every returned hypothesis's score is its true length-normalised log-probability: the cache was
    reordered with the beams."""
    prompt = np.array([[1, 2, 3]], np.int32)
    beams = lm_beam_search(LM, lm_params, prompt, beam_size=3, max_new_tokens=5, eos_id=0, alpha=0.6)
    assert np.all(np.diff(np.asarray(beams.scores[0])) <= 0), "best first"
    for i in range(3):
        seq = np.asarray(beams.tokens[0, i, : beams.lengths[0, i]])
        assert seq[-1] == 0 or len(seq) == 5
        expected = log_prob(lm_params, prompt[0], seq) / float(length_penalty(len(seq), 0.6))
        np.testing.assert_allclose(float(beams.scores[0, i]), expected, rtol=1e-4)


def test_generate_greedy_matches_full_forward_and_stops_at_eos(lm_params):
    prompt = np.array([[1, 2], [3, 4]], np.int32)
    out = generate(LM, lm_params, prompt, jax.random.PRNGKey(0), max_new_tokens=6, temperature=0.0)
    ids = prompt
    for _ in range(6):  # the oracle: argmax of a full forward pass, one token at a time
        next_tok = np.argmax(np.asarray(full_log_probs(lm_params, jnp.asarray(ids)))[:, -1], axis=-1)
        ids = np.concatenate([ids, next_tok[:, None]], axis=1)
    np.testing.assert_array_equal(np.asarray(out.tokens), ids)
    eos = int(ids[0, 3])  # stop at the first row's second generated token (or earlier if it repeats)
    stopped = generate(LM, lm_params, prompt, jax.random.PRNGKey(0), max_new_tokens=6, temperature=0.0, eos_id=eos)
    for row in range(2):
        hits = np.flatnonzero(ids[row, 2:] == eos)
        length = 2 + (hits[0] + 1 if hits.size else 6)
        assert int(stopped.lengths[row]) == length
        np.testing.assert_array_equal(np.asarray(stopped.tokens[row, :length]), ids[row, :length])
        assert (np.asarray(stopped.tokens[row, length:]) == eos).all()


def test_generate_past_the_context_window_and_errors(lm_params):
    out = generate(LM, lm_params, np.array([[1]], np.int32), jax.random.PRNGKey(0), 25, temperature=1.0, top_p=0.9)
    assert out.tokens.shape == (1, 26) and int(out.lengths[0]) == 26
    assert 0 <= int(out.tokens.min()) and int(out.tokens.max()) < 6
    with pytest.raises(ValueError, match="block_size"):
        generate(LM, lm_params, np.ones((1, 10), np.int32), jax.random.PRNGKey(0), 1)
    with pytest.raises(ValueError, match="block_size"):
        lm_beam_search(LM, lm_params, np.ones((1, 6), np.int32), 2, 5, eos_id=0)
