"""Scaled dot-product and multi-head attention as pure functions, boolean masks, and a KV-cached module.

Seeds 001·9 and 002·3 write attention as ``softmax(Q Kᵀ / √d_k) V`` with an additive ``-1e9``
mask; here masks are boolean (True = may attend), shaped to broadcast against the scores
[..., Q, K], and a query row whose keys are all masked gets zero weights (and a zero output)
instead of NaN or a uniform average. Softmax always runs in float32, so bfloat16 compute is safe.

``multi_head_attention(params, x_q, x_kv, ...)`` is the whole layer over a params pytree with the
layout of ``flax.linen.MultiHeadDotProductAttention`` (``query``/``key``/``value`` kernels
[D, H, Dh], ``out`` kernel [H, Dh, D]), so weights move freely between the two.
``MultiHeadAttention`` declares those params and calls the same pure pieces; with
``decode=True`` it keeps a key/value cache (collection ``'cache'``) for autoregressive decoding.
Its params name their axes (``embed`` for D, ``heads`` for H, ``kv`` for Dh; ``nnjax.logical_axes.box``),
which ``nnjax.train.sharding`` maps to mesh axes under ``--parallel fsdp``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.logical_axes import box

Params = dict[str, Any]


def causal_mask(num_queries: int, num_keys: int | None = None, offset: int | jax.Array = 0) -> jax.Array:
    """bool [Q, K]: query i (at absolute position ``offset + i``) may attend key j iff j <= offset + i."""
    num_keys = num_queries if num_keys is None else num_keys
    return jnp.arange(num_keys)[None, :] <= offset + jnp.arange(num_queries)[:, None]


def key_padding_mask(valid_BxK: jax.Array) -> jax.Array:
    """bool [B, 1, 1, K] from a [B, K] mask of real (True) keys: broadcasts over heads and queries."""
    return valid_BxK.astype(bool)[:, None, None, :]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical AND of the given boolean masks (broadcast together); ``None`` entries are skipped."""
    present = [m.astype(bool) for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = jnp.logical_and(out, m)
    return out


def scaled_dot_product_attention(
    q_xQxD: jax.Array,
    k_xKxD: jax.Array,
    v_xKxE: jax.Array,
    mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``softmax(q kᵀ / √D) v`` over the last two axes -> (output [..., Q, E], weights [..., Q, K]).

    Leading axes (batch, heads, ...) broadcast. ``mask`` (bool, broadcastable to [..., Q, K]) marks
    the keys each query may attend; masked keys get exactly zero weight and a fully masked row
    gives zero weights and a zero output. With ``dropout_key``, weights are dropped at
    ``dropout_rate`` (and the rest scaled by 1/(1 - rate)) before they mix the values; the returned
    weights are the un-dropped ones. Scores and softmax are computed in float32.
    """
    scale = 1.0 / jnp.sqrt(jnp.asarray(q_xQxD.shape[-1], jnp.float32))
    scores = jnp.einsum("...qd,...kd->...qk", q_xQxD, k_xKxD, preferred_element_type=jnp.float32) * scale
    if mask is not None:  # exp(min - row max) is exactly 0 wherever a row has a real key
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    if mask is not None:  # a row with no real key would be uniform: zero it
        weights = weights * jnp.any(mask, axis=-1, keepdims=True)
    mixing = weights
    if dropout_key is not None and dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_key, 1.0 - dropout_rate, weights.shape)
        mixing = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
    out = jnp.einsum("...qk,...ke->...qe", mixing.astype(v_xKxE.dtype), v_xKxE)
    return out, weights


def project_heads(params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Dense projection to heads: [B, T, D] @ kernel [D, H, Dh] (+ bias [H, Dh]) -> [B, T, H, Dh]."""
    y = jnp.einsum("btd,dhk->bthk", x_BxTxD, params["kernel"].astype(x_BxTxD.dtype))
    return y + params["bias"].astype(y.dtype) if "bias" in params else y


def merge_heads(params: Params, h_BxTxHxDh: jax.Array) -> jax.Array:
    """Output projection: [B, T, H, Dh] @ kernel [H, Dh, D] (+ bias [D]) -> [B, T, D]."""
    y = jnp.einsum("bthk,hkd->btd", h_BxTxHxDh, params["kernel"].astype(h_BxTxHxDh.dtype))
    return y + params["bias"].astype(y.dtype) if "bias" in params else y


def attend_heads(
    q_BxQxHxDh: jax.Array,
    k_BxKxHxDh: jax.Array,
    v_BxKxHxDh: jax.Array,
    mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-head attention on [B, T, H, Dh] tensors -> (output [B, Q, H, Dh], weights [B, H, Q, K]).

    ``mask`` broadcasts to [B, H, Q, K] (flax's layout, e.g. ``nn.make_attention_mask``).
    """
    to_heads_first = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731  [B, T, H, Dh] -> [B, H, T, Dh]
    out_BxHxQxDh, weights = scaled_dot_product_attention(
        to_heads_first(q_BxQxHxDh), to_heads_first(k_BxKxHxDh), to_heads_first(v_BxKxHxDh), mask,
        dropout_rate, dropout_key,
    )
    return to_heads_first(out_BxHxQxDh), weights


def multi_head_attention(
    params: Params,
    x_q_BxQxD: jax.Array,
    x_kv_BxKxD: jax.Array | None = None,
    mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
    return_weights: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Multi-head attention of queries ``x_q`` over ``x_kv`` (default: self-attention) -> [B, Q, D_out], and
    with ``return_weights`` also the attention weights [B, H, Q, K] (before dropout; torch's
    ``need_weights=True, average_attn_weights=False``).

    ``params`` has ``query``, ``key``, ``value`` ({'kernel': [D, H, Dh], 'bias': [H, Dh]}) and
    ``out`` ({'kernel': [H, Dh, D_out], 'bias': [D_out]}), the layout of
    ``flax.linen.MultiHeadDotProductAttention``; the number of heads is read from the kernels.
    ``mask`` is boolean, broadcastable to [B, H, Q, K], True where a query may attend a key.
    """
    x_kv_BxKxD = x_q_BxQxD if x_kv_BxKxD is None else x_kv_BxKxD
    q = project_heads(params["query"], x_q_BxQxD)
    k = project_heads(params["key"], x_kv_BxKxD)
    v = project_heads(params["value"], x_kv_BxKxD)
    out, weights_BxHxQxK = attend_heads(q, k, v, mask, dropout_rate, dropout_key)
    out = merge_heads(params["out"], out)
    return (out, weights_BxHxQxK) if return_weights else out


def _dense_params(
    kernel_shape: tuple[int, ...], num_in_axes: int, bias_shape: tuple[int, ...], use_bias: bool,
    kernel_axes: tuple[str, ...], bias_axes: tuple[str, ...],
) -> nn.initializers.Initializer:
    """Initializer of one projection's {'kernel', 'bias'}: LeCun normal over the fan-in of the first
    ``num_in_axes`` kernel axes (drawn as a 2-D matrix and reshaped, as ``nn.DenseGeneral`` does), zero bias;
    each named with its logical axes."""
    fan_in = math.prod(kernel_shape[:num_in_axes])

    def init(key: jax.Array) -> Params:
        kernel = nn.initializers.lecun_normal()(key, (fan_in, math.prod(kernel_shape) // fan_in), jnp.float32)
        params = {"kernel": box(kernel.reshape(kernel_shape), kernel_axes)}
        if use_bias:
            params["bias"] = box(jnp.zeros(bias_shape, jnp.float32), bias_axes)
        return params

    return init


class MultiHeadAttention(nn.Module):
    """Multi-head attention with boolean masks; params laid out as ``flax.linen.MultiHeadDotProductAttention``.

    ``__call__(x_q, x_kv=None, mask=None, train=False, decode=False, return_weights=False)`` ->
    [B, Q, out_features or D], or (that, the attention weights [B, H, Q, K]) with ``return_weights``.
    With ``decode=True`` (self-attention only) the projected keys and values are written into a
    cache (``'cache'`` collection: ``cached_key``/``cached_value`` [B, T_max, H, Dh] and
    ``cache_index``) at the current index, and the queries attend causally to everything cached so
    far; ``model.init(..., decode=True)`` on a [B, T_max] input creates a cache of that length.
    Attention dropout (``dropout_rate``) uses the ``'dropout'`` RNG stream when ``train``.
    """

    num_heads: int
    qkv_features: int | None = None
    out_features: int | None = None
    dropout_rate: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(
        self,
        x_q_BxQxD: jax.Array,
        x_kv_BxKxD: jax.Array | None = None,
        mask: jax.Array | None = None,
        train: bool = False,
        decode: bool = False,
        return_weights: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        d_q = x_q_BxQxD.shape[-1]
        d_kv = d_q if x_kv_BxKxD is None else x_kv_BxKxD.shape[-1]
        features = self.qkv_features or d_q
        if features % self.num_heads:
            raise ValueError(f"qkv_features ({features}) must be divisible by num_heads ({self.num_heads})")
        heads = (self.num_heads, features // self.num_heads)
        params = {
            name: self.param(
                name, _dense_params((d, *heads), 1, heads, self.use_bias, ("embed", "heads", "kv"), ("heads", "kv"))
            )
            for name, d in (("query", d_q), ("key", d_kv), ("value", d_kv))
        }
        d_out = self.out_features or d_q
        params["out"] = self.param(
            "out", _dense_params((*heads, d_out), 2, (d_out,), self.use_bias, ("heads", "kv", "embed"), ("embed",))
        )
        dropout_key = self.make_rng("dropout") if train and self.dropout_rate > 0.0 else None
        if not decode:
            return multi_head_attention(
                params, x_q_BxQxD, x_kv_BxKxD, mask, self.dropout_rate, dropout_key, return_weights
            )
        if x_kv_BxKxD is not None:
            raise ValueError("decode=True supports self-attention only (x_kv must be None)")
        q = project_heads(params["query"], x_q_BxQxD)
        k, v, cache_mask = self._update_cache(
            project_heads(params["key"], x_q_BxQxD), project_heads(params["value"], x_q_BxQxD)
        )
        out, weights_BxHxQxK = attend_heads(q, k, v, combine_masks(cache_mask, mask), self.dropout_rate, dropout_key)
        out = merge_heads(params["out"], out)
        return (out, weights_BxHxQxK) if return_weights else out

    def _update_cache(self, k_BxTxHxDh: jax.Array, v_BxTxHxDh: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Write T new keys/values at ``cache_index``; returns all cached keys, values and the causal mask."""
        initialized = self.has_variable("cache", "cached_key")
        cached_k = self.variable("cache", "cached_key", jnp.zeros, k_BxTxHxDh.shape, k_BxTxHxDh.dtype)
        cached_v = self.variable("cache", "cached_value", jnp.zeros, v_BxTxHxDh.shape, v_BxTxHxDh.dtype)
        index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
        t = k_BxTxHxDh.shape[1]
        capacity = cached_k.value.shape[1]
        if not initialized:  # model.init: the cache is created empty, with the input's length as capacity
            return k_BxTxHxDh, v_BxTxHxDh, causal_mask(t)[None, None]
        if t > capacity:
            raise ValueError(f"cannot decode {t} tokens at once into a cache of {capacity} positions")
        start = index.value
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k_BxTxHxDh.astype(cached_k.value.dtype), (0, start, 0, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v_BxTxHxDh.astype(cached_v.value.dtype), (0, start, 0, 0))
        index.value = start + t
        return cached_k.value, cached_v.value, causal_mask(t, capacity, offset=start)[None, None]
