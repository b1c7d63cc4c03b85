"""Autoregressive decoding for ``TransformerLM``: sampling (temperature, top-k, top-p, EOS) and beam search.

Seed 000·13 samples with a full forward pass per new token and its beam search never reorders the
beams (each beam keeps its own history whatever its parent was) and returns unnormalised scores.
Here every new token costs one cached forward step (``TransformerLM(decode=True)``), the whole
loop is one compiled ``lax.while_loop`` that stops as soon as every row has emitted EOS, and
``beam_search`` is the standard algorithm done right:

- each step extends every alive beam by every token, keeps the best ``2K`` candidates, and
  *reorders* the alive beams' histories and decoder caches by their parents;
- a candidate ending in EOS moves to a separate pool of finished hypotheses, ranked by the
  length-normalised score ``log p / lp(length)`` with GNMT's ``lp(n) = ((5 + n) / 6) ** alpha``;
- beams still alive after ``max_len`` tokens join the finished pool at that length;
- the search stops early once no alive beam can still beat the K-th finished hypothesis.

With enough beams to keep every prefix alive it returns exactly the best sequence of an exhaustive
search (tested on a tiny vocabulary).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

State = Any
StepFn = Callable[[State, jax.Array], tuple[jax.Array, State]]

NEG_INF = -jnp.inf


def filter_logits(logits_BxV: jax.Array, top_k: int | jax.Array = 0, top_p: float | jax.Array = 1.0) -> jax.Array:
    """``logits`` with every token outside the sampling set set to -inf: [B, V] -> [B, V].

    ``top_k > 0`` keeps the k highest logits (ties with the k-th are kept); ``top_p < 1`` keeps the
    smallest set of most likely tokens whose probabilities add up to at least ``top_p`` (nucleus
    sampling). Both together keep the intersection; the most likely token is always kept. Both may
    be traced values, so changing them does not recompile a jitted sampler.
    """
    if isinstance(top_k, int) and top_k < 0 or isinstance(top_p, float) and not 0.0 < top_p <= 1.0:
        raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got top_k={top_k}, top_p={top_p}")
    logits_BxV = logits_BxV.astype(jnp.float32)
    vocab = logits_BxV.shape[-1]
    sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
    kth_Bx1 = jnp.take(sorted_BxV, jnp.clip(top_k - 1, 0, vocab - 1), axis=-1)[:, None]
    keep_BxV = (top_k <= 0) | (logits_BxV >= kth_Bx1)
    probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
    mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # kept if the tokens above miss top_p
    cutoff_Bx1 = jnp.min(jnp.where(mass_before_BxV < top_p, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
    keep_BxV &= (top_p >= 1.0) | (logits_BxV >= cutoff_Bx1)
    return jnp.where(keep_BxV, logits_BxV, NEG_INF)


def sample_logits(
    key: jax.Array,
    logits_BxV: jax.Array,
    temperature: float | jax.Array = 1.0,
    top_k: int | jax.Array = 0,
    top_p: float | jax.Array = 1.0,
) -> jax.Array:
    """One token per row, int32 [B]: from ``softmax(filter_logits(logits) / temperature)``; greedy at temperature 0."""
    if isinstance(temperature, (int, float)) and temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits_BxV = filter_logits(logits_BxV, top_k, top_p)
    greedy_B = jnp.argmax(logits_BxV, axis=-1)
    sampled_B = jax.random.categorical(key, logits_BxV / jnp.maximum(temperature, 1e-6), axis=-1)
    return jnp.where(temperature > 0, sampled_B, greedy_B).astype(jnp.int32)


def init_cache(model: nn.Module, batch_size: int) -> State:
    """An empty decoding cache for ``batch_size`` sequences of up to ``model.block_size`` tokens."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((batch_size, model.block_size), jnp.int32), decode=True)
    )["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def decode_step(model: nn.Module, params: Any) -> StepFn:
    """``step(cache, ids_BxT) -> (logits of the last position [B, V], cache)``: one cached forward call."""

    def step(cache: State, ids_BxT: jax.Array) -> tuple[jax.Array, State]:
        logits_BxTxV, variables = model.apply(
            {"params": params, "cache": cache}, ids_BxT, decode=True, mutable=["cache"]
        )
        return logits_BxTxV[:, -1], variables["cache"]

    return step


def _check_room(model: nn.Module, prompt_len: int, new_tokens: int) -> None:
    if prompt_len < 1 or new_tokens < 1:
        raise ValueError(f"need a prompt of >= 1 token and >= 1 new token, got {prompt_len} and {new_tokens}")
    if prompt_len + new_tokens > model.block_size:
        raise ValueError(
            f"prompt ({prompt_len}) + new tokens ({new_tokens}) exceed the model's block_size {model.block_size}"
        )


class Generated(NamedTuple):
    """``generate``'s output: ``tokens`` int32 [B, P + N] (prompt first; after EOS every token is EOS)
    and ``lengths`` int32 [B] (prompt plus generated tokens up to and including the first EOS)."""

    tokens: jax.Array
    lengths: jax.Array


def generate(
    model: nn.Module,
    params: Any,
    prompt_BxP: jax.Array,
    key: jax.Array,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
) -> Generated:
    """Continue every prompt row by up to ``max_new_tokens`` sampled tokens (see ``sample_logits``).

    The context is fed in one cached call, then one token per step inside a compiled
    ``lax.while_loop`` that ends early once every row has produced ``eos_id`` (if given). When
    the context window (``model.block_size``) is full, generation goes on in a new window prefilled
    with the last ``block_size // 2`` tokens (positions restart at 0, as in training), so any
    length can be generated from a prompt shorter than ``block_size``.
    """
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    batch, prompt_len = prompt_BxP.shape
    if temperature < 0 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
    if not 1 <= prompt_len < model.block_size or max_new_tokens < 1:
        raise ValueError(
            f"need 1 <= prompt length < block_size ({model.block_size}) and max_new_tokens >= 1, "
            f"got {prompt_len} and {max_new_tokens}"
        )
    stop_id = -1 if eos_id is None else eos_id
    context_BxC, pieces, done_B = prompt_BxP, [], jnp.zeros((batch,), bool)
    while sum(p.shape[1] for p in pieces) < max_new_tokens and not bool(jnp.all(done_B)):
        key, window_key = jax.random.split(key)
        new_BxN, done_B = _generate_window(
            model, params, context_BxC, window_key, done_B, model.block_size - context_BxC.shape[1],
            float(temperature), top_k, float(top_p), stop_id,
        )
        pieces.append(new_BxN)
        context_BxC = jnp.concatenate([context_BxC, new_BxN], axis=1)[:, -(model.block_size // 2) :]
    new_BxN = jnp.concatenate(pieces, axis=1)[:, :max_new_tokens]
    new_BxN = jnp.pad(new_BxN, ((0, 0), (0, max_new_tokens - new_BxN.shape[1])), constant_values=max(stop_id, 0))
    is_eos_BxN = new_BxN == stop_id
    first_eos_B = jnp.where(is_eos_BxN.any(axis=1), jnp.argmax(is_eos_BxN, axis=1) + 1, max_new_tokens)
    return Generated(jnp.concatenate([prompt_BxP, new_BxN], axis=1), (prompt_len + first_eos_B).astype(jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate_window(
    model, params, context_BxC, key, done_B, num_new, temperature, top_k, top_p, stop_id
) -> tuple[jax.Array, jax.Array]:
    """Up to ``num_new`` tokens after ``context`` in one cached window -> (tokens [B, num_new], done [B]).

    Rows already ``done`` (or done on the way) emit ``stop_id``; the loop ends once all are done.
    """
    batch = context_BxC.shape[0]
    step = decode_step(model, params)
    logits_BxV, cache = step(init_cache(model, batch), context_BxC)

    def cond(carry):
        i, _, _, _, done_B, _ = carry
        return (i < num_new) & ~jnp.all(done_B)

    def body(carry):
        i, new_BxN, cache, logits_BxV, done_B, key = carry
        key, sample_key = jax.random.split(key)
        token_B = sample_logits(sample_key, logits_BxV, temperature, top_k, top_p)
        token_B = jnp.where(done_B, stop_id, token_B)
        new_BxN = new_BxN.at[:, i].set(token_B)
        logits_BxV, cache = step(cache, token_B[:, None])
        return i + 1, new_BxN, cache, logits_BxV, done_B | (token_B == stop_id), key

    fill = jnp.full((batch, num_new), jnp.maximum(stop_id, 0), jnp.int32)
    _, new_BxN, _, _, done_B, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), fill, cache, logits_BxV, done_B, key))
    return new_BxN, done_B


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's length normaliser ``((5 + length) / 6) ** alpha`` (Wu et al., 2016); 1 for alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


def gather_rows(state: State, rows_N: jax.Array) -> State:
    """Rows ``rows_N`` of every leaf with a leading batch axis (ndim >= 1); scalars (cache indices) are kept."""
    return jax.tree.map(lambda x: x[rows_N] if x.ndim else x, state)


def repeat_rows(state: State, times: int) -> State:
    """Every leaf's batch rows repeated ``times`` times in place ([B, ...] -> [B·times, ...]); scalars kept."""
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0) if x.ndim else x, state)


class Beams(NamedTuple):
    """``beam_search``'s output, best first per batch row: ``tokens`` int32 [B, K, max_len] (EOS-padded
    after the end), ``scores`` float32 [B, K] (length-normalised log-probabilities; -inf for empty
    slots) and ``lengths`` int32 [B, K] (generated tokens, EOS included)."""

    tokens: jax.Array
    scores: jax.Array
    lengths: jax.Array


def beam_search(
    step: StepFn,
    state: State,
    logits_BxV: jax.Array,
    beam_size: int,
    max_len: int,
    eos_id: int,
    alpha: float = 0.6,
) -> Beams:
    """The K = ``beam_size`` best continuations of B contexts by length-normalised log-probability.

    ``state`` is the decoder state after the contexts (B rows on every leaf with ndim >= 1) and
    ``logits_BxV`` the next-token logits there; ``step(state, tokens_N) -> (logits [N, V], state)``
    advances N = B·K rows by one token. Hypotheses end at EOS or after ``max_len`` tokens. Jittable;
    see the module docstring for the algorithm.
    """
    if beam_size < 1 or max_len < 1 or alpha < 0:
        raise ValueError(f"need beam_size >= 1, max_len >= 1, alpha >= 0; got {beam_size}, {max_len}, {alpha}")
    batch, vocab = logits_BxV.shape
    k = beam_size
    n_cand = min(2 * k, k * vocab)
    batch_B1 = jnp.arange(batch)[:, None]
    final_lp = length_penalty(jnp.float32(max_len), alpha)

    def keep_best(scores_BxC, *arrays_BxC):
        """The top-k of ``scores`` along axis 1, and ``arrays`` reordered alike."""
        top_scores, idx_BxK = jax.lax.top_k(scores_BxC, k)
        return (top_scores, *(a[batch_B1, idx_BxK] for a in arrays_BxC), idx_BxK)

    def merge_finished(fin, scores_BxC, seqs_BxCxL, lengths_BxC):
        fin_scores, fin_seqs, fin_lengths = fin
        scores, seqs, lengths, _ = keep_best(
            jnp.concatenate([fin_scores, scores_BxC], axis=1),
            jnp.concatenate([fin_seqs, seqs_BxCxL], axis=1),
            jnp.concatenate([fin_lengths, lengths_BxC], axis=1),
        )
        return scores, seqs, lengths

    def cond(carry):
        t, alive_logp_BxK, _, _, _, (fin_scores_BxK, _, _) = carry
        best_possible_B = jnp.max(alive_logp_BxK, axis=1) / final_lp
        return (t < max_len) & ~jnp.all(fin_scores_BxK[:, -1] >= best_possible_B)

    def body(carry):
        t, alive_logp_BxK, alive_seqs_BxKxL, state, logits_NxV, fin = carry
        logp_BxKxV = jax.nn.log_softmax(logits_NxV.astype(jnp.float32), axis=-1).reshape(batch, k, vocab)
        cand_BxKV = (alive_logp_BxK[:, :, None] + logp_BxKxV).reshape(batch, k * vocab)
        cand_logp_BxC, flat_BxC = jax.lax.top_k(cand_BxKV, n_cand)
        parent_BxC, token_BxC = flat_BxC // vocab, (flat_BxC % vocab).astype(jnp.int32)
        seqs_BxCxL = alive_seqs_BxKxL[batch_B1, parent_BxC].at[:, :, t].set(token_BxC)
        is_eos_BxC = token_BxC == eos_id
        length = (t + 1).astype(jnp.float32)
        fin = merge_finished(
            fin, jnp.where(is_eos_BxC, cand_logp_BxC / length_penalty(length, alpha), NEG_INF),
            seqs_BxCxL, jnp.full(is_eos_BxC.shape, t + 1, jnp.int32),
        )
        alive_logp_BxK, alive_seqs_BxKxL, parent_BxK, token_BxK, _ = keep_best(
            jnp.where(is_eos_BxC, NEG_INF, cand_logp_BxC), seqs_BxCxL, parent_BxC, token_BxC
        )
        rows_N = (batch_B1 * k + parent_BxK).reshape(-1)
        logits_NxV, state = step(gather_rows(state, rows_N), token_BxK.reshape(-1))
        return t + 1, alive_logp_BxK, alive_seqs_BxKxL, state, logits_NxV, fin

    alive_logp_BxK = jnp.full((batch, k), NEG_INF).at[:, 0].set(0.0)  # one live beam per context at first
    fin = (
        jnp.full((batch, k), NEG_INF),
        jnp.full((batch, k, max_len), eos_id, jnp.int32),
        jnp.zeros((batch, k), jnp.int32),
    )
    init = (
        jnp.int32(0), alive_logp_BxK, jnp.full((batch, k, max_len), eos_id, jnp.int32),
        repeat_rows(state, k), jnp.repeat(logits_BxV, k, axis=0), fin,
    )
    t, alive_logp_BxK, alive_seqs_BxKxL, _, _, fin = jax.lax.while_loop(cond, body, init)
    at_max_len = jnp.where(t == max_len, alive_logp_BxK / final_lp, NEG_INF)  # unfinished beams end here
    scores, seqs, lengths = merge_finished(fin, at_max_len, alive_seqs_BxKxL, jnp.full((batch, k), max_len, jnp.int32))
    return Beams(seqs, scores, lengths)


def lm_beam_search(
    model: nn.Module,
    params: Any,
    prompt_BxP: jax.Array,
    beam_size: int,
    max_new_tokens: int,
    eos_id: int,
    alpha: float = 0.6,
) -> Beams:
    """``beam_search`` over a ``TransformerLM``'s cached decoder, continuing each prompt row (jitted)."""
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    _check_room(model, prompt_BxP.shape[1], max_new_tokens)
    return _lm_beam_search(model, params, prompt_BxP, beam_size, max_new_tokens, eos_id, float(alpha))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6))
def _lm_beam_search(model, params, prompt_BxP, beam_size, max_new_tokens, eos_id, alpha) -> Beams:
    step = decode_step(model, params)
    logits_BxV, cache = step(init_cache(model, prompt_BxP.shape[0]), prompt_BxP)
    one_token = lambda cache, token_N: step(cache, token_N[:, None])  # noqa: E731
    return beam_search(one_token, cache, logits_BxV, beam_size, max_new_tokens, eos_id, alpha)
