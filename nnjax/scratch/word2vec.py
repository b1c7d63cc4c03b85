"""Skip-gram word embeddings with negative sampling (SGNS), seed 001 slide 8, as pure functions.

The slide trains a full-softmax skip-gram (``softmax(W_context^T W[word])``) one pair at a time.
Here the objective is Mikolov et al.'s negative sampling: for a centre word c, an observed context
word o and K words n_k drawn from the unigram distribution raised to 3/4,

    loss(c, o, n) = -log σ(u_o · v_c) - Σ_k log σ(-u_{n_k} · v_c),

with input vectors v (``params['in']``, the embeddings) and output vectors u (``params['out']``).
Pairs come from a window around every token (``skipgram_pairs``); training is optax Adam over
mini-batches of pairs inside one jitted ``lax.scan`` (``nnjax.scratch.descent.minimize``), with the
negatives drawn inside the step from an explicit per-step key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax.scratch.descent import minimize

Params = dict[str, jax.Array]


def skipgram_pairs(ids_T: np.ndarray, window: int, doc_T: np.ndarray | None = None) -> np.ndarray:
    """All (centre, context) id pairs int32 [P, 2] with the context at most ``window`` tokens away.

    Every ordered pair (t, t + d) and (t + d, t) for d = 1..window is listed, grouped by distance.
    With ``doc_T`` (a document/sentence id per token), pairs never cross a document boundary.
    """
    ids_T = np.asarray(ids_T).reshape(-1)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if doc_T is not None and np.shape(doc_T) != ids_T.shape:
        raise ValueError(f"doc_T has shape {np.shape(doc_T)}, expected {ids_T.shape} like ids_T")
    chunks = []
    for d in range(1, min(window, len(ids_T) - 1) + 1):
        left, right = ids_T[:-d], ids_T[d:]
        if doc_T is not None:
            same = np.asarray(doc_T)[:-d] == np.asarray(doc_T)[d:]
            left, right = left[same], right[same]
        chunks += [np.stack([left, right], axis=1), np.stack([right, left], axis=1)]
    if not chunks:
        return np.zeros((0, 2), dtype=np.int32)
    return np.concatenate(chunks).astype(np.int32)


def subsample_keep_prob(counts_V: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Mikolov's frequent-word subsampling: keep probability float [V] = min(1, sqrt(t/f) + t/f).

    ``f`` is a word's share of all tokens; words with zero count get probability 0.
    """
    counts_V = np.asarray(counts_V, dtype=np.float64)
    freq_V = counts_V / max(counts_V.sum(), 1.0)
    with np.errstate(divide="ignore"):
        ratio_V = np.where(freq_V > 0, threshold / np.where(freq_V > 0, freq_V, 1.0), 0.0)
    return np.minimum(1.0, np.sqrt(ratio_V) + ratio_V)


def negative_sampling_probs(counts_V: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Noise distribution float32 [V] proportional to count**power (0 for zero counts)."""
    weights_V = np.asarray(counts_V, dtype=np.float64) ** power
    weights_V[np.asarray(counts_V) <= 0] = 0.0
    total = weights_V.sum()
    if total <= 0:
        raise ValueError("counts_V must contain a positive count")
    return (weights_V / total).astype(np.float32)


def sample_negatives(key: jax.Array, probs_V: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Ids int32 ``shape`` drawn i.i.d. from ``probs_V`` by inverting its CDF (O(log V) per draw)."""
    cdf_V = jnp.cumsum(probs_V)
    u = jax.random.uniform(key, shape, maxval=cdf_V[-1])
    return jnp.minimum(jnp.searchsorted(cdf_V, u, side="right"), probs_V.shape[0] - 1).astype(jnp.int32)


def init_embeddings(key: jax.Array, vocab_size: int, dim: int) -> Params:
    """word2vec's initialisation: input vectors U(-0.5/dim, 0.5/dim) [V, D], output vectors zero [V, D]."""
    scale = 0.5 / dim
    return {
        "in": jax.random.uniform(key, (vocab_size, dim), minval=-scale, maxval=scale),
        "out": jnp.zeros((vocab_size, dim)),
    }


def sgns_loss(params: Params, centers_B: jax.Array, contexts_B: jax.Array, negatives_BxK: jax.Array) -> jax.Array:
    """Mean negative-sampling loss over the batch (scalar); ``log_sigmoid`` keeps it finite for any score."""
    v_BxD = params["in"][centers_B]
    pos_B = jnp.einsum("bd,bd->b", v_BxD, params["out"][contexts_B])
    neg_BxK = jnp.einsum("bd,bkd->bk", v_BxD, params["out"][negatives_BxK])
    return -jnp.mean(jax.nn.log_sigmoid(pos_B) + jnp.sum(jax.nn.log_sigmoid(-neg_BxK), axis=-1))


def sgns_value_and_grad(
    params: Params, centers_B: jax.Array, contexts_B: jax.Array, negatives_BxK: jax.Array
) -> tuple[jax.Array, Params]:
    """``sgns_loss`` and its gradient written by hand (the backward pass of the slide, for SGNS).

    With s = u·v, d/ds[-log σ(s)] = σ(s) - 1 and d/ds[-log σ(-s)] = σ(s); each score sends that
    coefficient times the other vector to both rows, summed with scatter-adds (repeated ids add up).
    """
    batch = centers_B.shape[0]
    v_BxD = params["in"][centers_B]
    u_pos_BxD = params["out"][contexts_B]
    u_neg_BxKxD = params["out"][negatives_BxK]
    pos_B = jnp.einsum("bd,bd->b", v_BxD, u_pos_BxD)
    neg_BxK = jnp.einsum("bd,bkd->bk", v_BxD, u_neg_BxKxD)
    loss = -jnp.mean(jax.nn.log_sigmoid(pos_B) + jnp.sum(jax.nn.log_sigmoid(-neg_BxK), axis=-1))
    g_pos_B = (jax.nn.sigmoid(pos_B) - 1.0) / batch
    g_neg_BxK = jax.nn.sigmoid(neg_BxK) / batch
    g_v_BxD = g_pos_B[:, None] * u_pos_BxD + jnp.einsum("bk,bkd->bd", g_neg_BxK, u_neg_BxKxD)
    grad_in = jnp.zeros_like(params["in"]).at[centers_B].add(g_v_BxD)
    grad_out = (
        jnp.zeros_like(params["out"])
        .at[contexts_B].add(g_pos_B[:, None] * v_BxD)
        .at[negatives_BxK].add(g_neg_BxK[..., None] * v_BxD[:, None, :])
    )
    return loss, {"in": grad_in, "out": grad_out}


class SGNSResult(NamedTuple):
    """Trained params (``'in'`` are the word vectors) and the loss before each step [T]."""

    params: Params
    loss_T: jax.Array


def make_batches(key: jax.Array, pairs_Px2: np.ndarray, steps: int, batch_size: int) -> dict[str, jax.Array]:
    """``steps`` mini-batches of pairs: a fresh random order per pass over the pairs, plus one key per step.

    Returns ``{'centers': int32 [T, B], 'contexts': int32 [T, B], 'key': [T] keys}``.
    """
    num_pairs = len(pairs_Px2)
    if num_pairs == 0:
        raise ValueError("pairs_Px2 is empty: the corpus is shorter than two tokens")
    perm_key, step_key = jax.random.split(key)
    needed = steps * batch_size
    passes = -(-needed // num_pairs)
    rng = np.random.default_rng(int(jax.random.randint(perm_key, (), 0, np.iinfo(np.int32).max)))
    order = np.concatenate([rng.permutation(num_pairs) for _ in range(passes)])[:needed]
    chosen = np.asarray(pairs_Px2)[order].reshape(steps, batch_size, 2)
    return {
        "centers": jnp.asarray(chosen[..., 0]),
        "contexts": jnp.asarray(chosen[..., 1]),
        "key": jax.random.split(step_key, steps),
    }


def train_sgns(
    key: jax.Array,
    pairs_Px2: np.ndarray,
    counts_V: np.ndarray,
    dim: int = 100,
    negatives: int = 5,
    steps: int = 1000,
    batch_size: int = 1024,
    learning_rate: float = 1e-2,
    manual_grad: bool = False,
    params: Params | None = None,
) -> SGNSResult:
    """Train SGNS embeddings for a vocabulary with token counts ``counts_V`` on (centre, context) pairs.

    Negatives come from ``negative_sampling_probs(counts_V)``; the optimizer is ``optax.adam``.
    ``manual_grad`` swaps ``jax.value_and_grad(sgns_loss)`` for ``sgns_value_and_grad``. Training
    starts from ``params`` when given, else from ``init_embeddings`` with a key split from ``key``.
    """
    init_key, batch_key = jax.random.split(key)
    probs_V = jnp.asarray(negative_sampling_probs(counts_V))
    if params is None:
        params = init_embeddings(init_key, len(counts_V), dim)
    elif params["in"].shape[0] != len(counts_V):
        raise ValueError(f"params cover {params['in'].shape[0]} words but counts_V has {len(counts_V)}")
    batches = make_batches(batch_key, pairs_Px2, steps, batch_size)
    loss_grad = sgns_value_and_grad if manual_grad else jax.value_and_grad(sgns_loss)

    def value_and_grad(params, batch):
        negatives_BxK = sample_negatives(batch["key"], probs_V, (batch_size, negatives))
        return loss_grad(params, batch["centers"], batch["contexts"], negatives_BxK)

    descent = minimize(value_and_grad, params, optax.adam(learning_rate), batches=batches)
    return SGNSResult(descent.params, descent.loss_T)


def heldout_loss(
    key: jax.Array, params: Params, pairs_Px2: np.ndarray, counts_V: np.ndarray, negatives: int = 5
) -> float:
    """``sgns_loss`` on all of ``pairs_Px2`` with fresh negatives from ``counts_V`` (a generalisation measure)."""
    probs_V = jnp.asarray(negative_sampling_probs(counts_V))
    pairs_Px2 = jnp.asarray(pairs_Px2)
    negatives_PxK = sample_negatives(key, probs_V, (pairs_Px2.shape[0], negatives))
    return float(jax.jit(sgns_loss)(params, pairs_Px2[:, 0], pairs_Px2[:, 1], negatives_PxK))


def cosine_similarity(a_NxD: jax.Array, b_NxD: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Row-wise cosine similarity [N]."""
    dot_N = jnp.sum(a_NxD * b_NxD, axis=-1)
    return dot_N / (jnp.linalg.norm(a_NxD, axis=-1) * jnp.linalg.norm(b_NxD, axis=-1) + eps)


def pair_similarity_gap(embeddings_VxD: jax.Array, pairs_Px2: np.ndarray, key: jax.Array) -> dict[str, float]:
    """Mean cosine similarity of co-occurring pairs vs the same pairs with contexts shuffled.

    Shuffling the context column keeps both words' frequency distributions, so the gap measures
    co-occurrence only. Returns ``{'cooccurring', 'random', 'gap'}``.
    """
    pairs_Px2 = jnp.asarray(pairs_Px2)
    centers, contexts = pairs_Px2[:, 0], pairs_Px2[:, 1]
    shuffled = jax.random.permutation(key, contexts)
    together = float(jnp.mean(cosine_similarity(embeddings_VxD[centers], embeddings_VxD[contexts])))
    apart = float(jnp.mean(cosine_similarity(embeddings_VxD[centers], embeddings_VxD[shuffled])))
    return {"cooccurring": together, "random": apart, "gap": together - apart}


def nearest_neighbours(embeddings_VxD: jax.Array, word_id: int, k: int = 5, exclude: tuple[int, ...] = ()) -> tuple[
    np.ndarray, np.ndarray
]:
    """The ``k`` ids most cosine-similar to ``word_id`` (itself and ``exclude`` left out) and their similarities."""
    vocab_size = embeddings_VxD.shape[0]
    if not 0 <= word_id < vocab_size:
        raise ValueError(f"word_id {word_id} is outside the vocabulary of size {vocab_size}")
    emb = np.asarray(embeddings_VxD, dtype=np.float64)
    unit_VxD = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims_V = unit_VxD @ unit_VxD[word_id]
    sims_V[[word_id, *exclude]] = -np.inf
    k = min(k, vocab_size - 1 - len(set(exclude) - {word_id}))
    top = np.argsort(-sims_V, kind="stable")[:k]
    return top, sims_V[top]
