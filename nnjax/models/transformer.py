"""Transformer blocks, an encoder over padded token ids, a pooled classifier and a decoder-only LM.

``EncoderBlock`` is one residual block of masked multi-head self-attention and a position-wise MLP:

    norm='pre'  (seed 000·3 ``ResidualAttentionBlock``, GPT-2):   x <- x + Drop(MHA(LN(x)))
                                                                 x <- x + Drop(MLP(LN(x)))
    norm='post' (seed 001·11, the original Transformer):         x <- LN(x + Drop(MHA(x)))
                                                                 x <- LN(x + Drop(MLP(x)))

with MLP = Dense(d_ff) -> GELU or ReLU -> Dropout -> Dense(d_model). Attention is
``nnjax.models.attention.MultiHeadAttention`` (boolean masks; params laid out as flax's).

Params name their axes (``embed`` d_model, ``mlp`` d_ff, ``heads``, ``kv`` head width, ``vocab``, ``position``;
``nnjax.logical_axes.logical_init``), and ``nnjax.train.sharding`` shards by those names.

``TransformerEncoder`` maps right-padded token ids int [B, T] (``<pad>`` = 0) to hidden states
[B, T, d_model]: token embeddings plus learned or sinusoidal (seed 000·5, with the embedding scaled
by √d_model) position encodings, ``num_layers`` blocks, and a final LayerNorm for pre-LN stacks.
No position attends to padding, so the hidden states of real tokens do not depend on how much
padding follows them. ``TransformerClassifier`` pools them into logits (seed 004·15).

``TransformerLM`` (seed 000·13) is a decoder-only (GPT-style) language model: causal pre-LN
blocks, learned positions, output projection tied to the token embedding. ``decode=True`` runs it
incrementally over a key/value cache (``nnjax.models.generation`` samples and beam-searches with
it); ``remat`` recomputes each block's activations in the backward pass (``REMAT_POLICIES``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nnjax.logical_axes import logical_init
from nnjax.models.attention import MultiHeadAttention, causal_mask, key_padding_mask
from nnjax.models.layers import masked_mean, padding_mask

POOLINGS = ("mean", "cls")
NORMS = ("pre", "post")
ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu}
POSITIONALS = ("learned", "sinusoidal")
REMAT_POLICIES = {
    "none": None,  # keep every activation (no rematerialisation)
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each block's input
    "dots": jax.checkpoint_policies.dots_saveable,  # keep matmul outputs, recompute the rest
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls only
}


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
    """float32 [length, d_model]: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(same) (seed 000·5)."""
    position_Tx1 = np.arange(length, dtype=np.float64)[:, None]
    inv_freq = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * -(np.log(10000.0) / d_model))
    angles = position_Tx1 * inv_freq
    pe = np.zeros((length, d_model), np.float64)
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return pe.astype(np.float32)


def _dense(features: int, axes: tuple[str, str], name: str) -> nn.Dense:
    """``nn.Dense`` whose kernel [in, out] and bias [out] carry the logical axis names ``axes``."""
    return nn.Dense(
        features,
        kernel_init=logical_init(nn.initializers.lecun_normal(), axes),
        bias_init=logical_init(nn.initializers.zeros_init(), axes[1:]),
        name=name,
    )


def _embedding_init(axes: tuple[str, str]) -> nn.initializers.Initializer:
    """GPT-2's normal(0.02) initializer for an embedding table, named with its logical axes."""
    return logical_init(nn.initializers.normal(stddev=0.02), axes)


class EncoderBlock(nn.Module):
    """One residual attention + MLP block, pre- or post-LayerNorm (see the module docstring).

    ``d_ff`` 0 means 4 × d_model (seed 000·3). ``__call__(x, mask, train, decode)``: hidden states
    [B, T, D] and a boolean attention mask broadcastable to [B, H, T, T] (or ``None``) -> [B, T, D];
    ``decode=True`` attends causally over the key/value cache (see ``MultiHeadAttention``).
    """

    d_model: int
    num_heads: int
    d_ff: int = 0
    dropout: float = 0.0
    norm: str = "pre"
    activation: str = "gelu"

    @nn.compact
    def __call__(
        self, x_BxTxD: jax.Array, mask: jax.Array | None = None, train: bool = False, decode: bool = False
    ) -> jax.Array:
        _check_choice("norm", self.norm, NORMS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        deterministic = not train
        attention = MultiHeadAttention(self.num_heads, self.d_model, dropout_rate=self.dropout, name="attention")
        ln_attention, ln_mlp = nn.LayerNorm(name="ln_attention"), nn.LayerNorm(name="ln_mlp")
        drop = lambda h: nn.Dropout(self.dropout)(h, deterministic=deterministic)  # noqa: E731

        def mlp(h):
            h = ACTIVATIONS[self.activation](_dense(self.d_ff or 4 * self.d_model, ("embed", "mlp"), "mlp_in")(h))
            return _dense(self.d_model, ("mlp", "embed"), "mlp_out")(drop(h))

        if self.norm == "pre":
            x_BxTxD = x_BxTxD + drop(attention(ln_attention(x_BxTxD), mask=mask, train=train, decode=decode))
            return x_BxTxD + drop(mlp(ln_mlp(x_BxTxD)))
        x_BxTxD = ln_attention(x_BxTxD + drop(attention(x_BxTxD, mask=mask, train=train, decode=decode)))
        return ln_mlp(x_BxTxD + drop(mlp(x_BxTxD)))


class TransformerEncoder(nn.Module):
    """Token ids [B, T] -> hidden states [B, T, d_model] (see the module docstring).

    ``positional='learned'`` adds a trained [max_len, d_model] table; ``'sinusoidal'`` adds the fixed
    encoding of seed 000·5 to embeddings scaled by √d_model. ``norm``/``activation`` choose the block.
    """

    vocab_size: int
    max_len: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    norm: str = "pre"
    activation: str = "gelu"
    positional: str = "learned"

    def setup(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        _check_choice("positional", self.positional, POSITIONALS)
        self.token_embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=_embedding_init(("vocab", "embed")))
        if self.positional == "learned":
            self.position_embed = self.param(
                "position_embed", _embedding_init(("position", "embed")), (self.max_len, self.d_model)
            )
        self.blocks = [
            EncoderBlock(self.d_model, self.num_heads, self.d_ff, self.dropout, self.norm, self.activation, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.embed_dropout = nn.Dropout(self.dropout)
        if self.norm == "pre":
            self.ln_final = nn.LayerNorm()

    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids int [B, T] with T <= max_len -> hidden states float32 [B, T, d_model]."""
        valid_BxT = padding_mask(ids_BxT)
        t = ids_BxT.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds the encoder's max_len {self.max_len}")
        x_BxTxD = self.token_embed(ids_BxT)
        if self.positional == "learned":
            x_BxTxD = x_BxTxD + self.position_embed[None, :t]
        else:
            x_BxTxD = x_BxTxD * np.sqrt(self.d_model) + sinusoidal_positions(t, self.d_model)[None]
        x_BxTxD = self.embed_dropout(x_BxTxD, deterministic=not train)
        mask = key_padding_mask(valid_BxT)
        for block in self.blocks:
            x_BxTxD = block(x_BxTxD, mask, train=train)
        return self.ln_final(x_BxTxD) if self.norm == "pre" else x_BxTxD


class TransformerClassifier(nn.Module):
    """``TransformerEncoder`` -> pooled [B, d_model] -> Dense logits [B, num_outputs].

    ``pooling='mean'`` averages the hidden states of the real tokens; ``'cls'`` takes position 0
    (prepend a dedicated token to every text to use it as BERT's ``[CLS]``). The encoder's
    parameters live under ``params['encoder']``, so a trained encoder can be reused elsewhere.
    """

    vocab_size: int
    max_len: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    num_outputs: int = 1
    pooling: str = "mean"
    norm: str = "pre"
    activation: str = "gelu"
    positional: str = "learned"

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids int [B, T] -> logits float32 [B, num_outputs]."""
        _check_choice("pooling", self.pooling, POOLINGS)
        encoder = TransformerEncoder(
            self.vocab_size, self.max_len, self.d_model, self.num_heads, self.num_layers, self.d_ff, self.dropout,
            self.norm, self.activation, self.positional, name="encoder",
        )
        h_BxTxD = encoder(ids_BxT, train=train)
        pooled_BxD = masked_mean(h_BxTxD, padding_mask(ids_BxT)) if self.pooling == "mean" else h_BxTxD[:, 0]
        pooled_BxD = nn.Dropout(self.dropout)(pooled_BxD, deterministic=not train)
        return nn.Dense(self.num_outputs, name="head")(pooled_BxD)


class TransformerLM(nn.Module):
    """Decoder-only causal language model: token ids [B, T] -> next-token logits float32 [B, T, vocab_size].

    Defaults are nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64, no dropout).
    Token + learned position embeddings -> ``num_layers`` causal pre-LN ``EncoderBlock``s -> LayerNorm
    -> logits through the transposed token embedding (tied weights).

    ``decode=True``: the ids continue the sequence held in the ``'cache'`` collection (create it with
    ``model.init(key, ids_of_shape_[B, block_size], decode=True)['cache']``, zero it, and apply with
    ``mutable=['cache']``); a prompt can be fed in one call, then one token per call.
    ``remat`` (a key of ``REMAT_POLICIES``) wraps each block in ``nn.remat`` with that policy:
    the gradients are unchanged, activation memory drops, compute rises.
    """

    vocab_size: int
    block_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int = 0
    dropout: float = 0.0
    remat: str = "none"

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False, decode: bool = False) -> jax.Array:
        _check_choice("remat", self.remat, REMAT_POLICIES)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if ids_BxT.ndim != 2 or not jnp.issubdtype(ids_BxT.dtype, jnp.integer):
            raise ValueError(f"ids must be integer token ids [B, T], got {ids_BxT.dtype} {ids_BxT.shape}")
        t = ids_BxT.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        token_embed = nn.Embed(
            self.vocab_size, self.d_model, embedding_init=_embedding_init(("vocab", "embed")), name="token_embed"
        )
        position_embed = self.param("position_embed", _embedding_init(("position", "embed")), (self.block_size, self.d_model))
        offset = 0
        if decode:
            cached = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            if cached:
                offset = position.value
                position.value = offset + t
        x_BxTxD = token_embed(ids_BxT) + jax.lax.dynamic_slice_in_dim(position_embed, offset, t)[None]
        x_BxTxD = nn.Dropout(self.dropout)(x_BxTxD, deterministic=not train)
        block_cls = EncoderBlock
        if REMAT_POLICIES[self.remat] is not None:
            block_cls = nn.remat(EncoderBlock, policy=REMAT_POLICIES[self.remat], static_argnums=(3, 4))
        mask = None if decode else causal_mask(t)[None, None]
        for i in range(self.num_layers):
            block = block_cls(self.d_model, self.num_heads, self.d_ff, self.dropout, "pre", "gelu", name=f"block_{i}")
            x_BxTxD = block(x_BxTxD, mask, train, decode)
        x_BxTxD = nn.LayerNorm(name="ln_final")(x_BxTxD)
        return token_embed.attend(x_BxTxD).astype(jnp.float32)
