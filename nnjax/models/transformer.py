"""A pre-LayerNorm Transformer encoder over right-padded token ids, and a pooled classifier on it (seed 004·15).

``TransformerEncoder`` maps token ids int [B, T] (``<pad>`` = 0, T <= ``max_len``) to hidden
states [B, T, d_model]: token + learned position embeddings, ``num_layers`` blocks of

    x <- x + Dropout(MultiHeadSelfAttention(LayerNorm(x), mask))
    x <- x + Dropout(Dense(d_model)(Dropout(GELU(Dense(d_ff)(LayerNorm(x))))))

and a final LayerNorm. The attention mask, built from ``ids != PAD_ID``, lets no position attend
to padding, so the hidden states of real tokens do not depend on how much padding follows them
(hidden states at padded positions are meaningless). ``TransformerClassifier`` pools the real
positions (their mean, or position 0 as BERT's ``[CLS]``) into logits [B, num_outputs].
"""

from __future__ import annotations

import flax.linen as nn
import jax

from nnjax.models.layers import masked_mean, padding_mask

POOLINGS = ("mean", "cls")


class EncoderBlock(nn.Module):
    """One pre-LayerNorm block: masked multi-head self-attention then a GELU MLP, each residual."""

    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, mask_Bx1xTxT: jax.Array, train: bool = False) -> jax.Array:
        """Hidden states [B, T, D] and an attention mask [B, 1, T, T] -> hidden states [B, T, D]."""
        deterministic = not train
        h = nn.LayerNorm(name="ln_attention")(x_BxTxD)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=self.d_model,
            dropout_rate=self.dropout,
            deterministic=deterministic,
            name="attention",
        )(h, mask=mask_Bx1xTxT)
        x_BxTxD = x_BxTxD + nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.LayerNorm(name="ln_mlp")(x_BxTxD)
        h = nn.gelu(nn.Dense(self.d_ff, name="mlp_in")(h))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.Dense(self.d_model, name="mlp_out")(h)
        return x_BxTxD + nn.Dropout(self.dropout)(h, deterministic=deterministic)


class TransformerEncoder(nn.Module):
    """Token ids [B, T] -> hidden states [B, T, d_model] (see the module docstring)."""

    vocab_size: int
    max_len: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1

    def setup(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        init = nn.initializers.normal(stddev=0.02)
        self.token_embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=init)
        self.position_embed = self.param("position_embed", init, (self.max_len, self.d_model))
        self.blocks = [
            EncoderBlock(self.d_model, self.num_heads, self.d_ff, self.dropout, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.embed_dropout = nn.Dropout(self.dropout)
        self.ln_final = nn.LayerNorm()

    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids int [B, T] with T <= max_len -> hidden states float32 [B, T, d_model]."""
        mask_BxT = padding_mask(ids_BxT)
        t = ids_BxT.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds the encoder's max_len {self.max_len}")
        x_BxTxD = self.token_embed(ids_BxT) + self.position_embed[None, :t]
        x_BxTxD = self.embed_dropout(x_BxTxD, deterministic=not train)
        mask_Bx1xTxT = nn.make_attention_mask(mask_BxT, mask_BxT)
        for block in self.blocks:
            x_BxTxD = block(x_BxTxD, mask_Bx1xTxT, train=train)
        return self.ln_final(x_BxTxD)


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

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids int [B, T] -> logits float32 [B, num_outputs]."""
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        encoder = TransformerEncoder(
            self.vocab_size, self.max_len, self.d_model, self.num_heads, self.num_layers, self.d_ff, self.dropout,
            name="encoder",
        )
        h_BxTxD = encoder(ids_BxT, train=train)
        pooled_BxD = masked_mean(h_BxTxD, padding_mask(ids_BxT)) if self.pooling == "mean" else h_BxTxD[:, 0]
        pooled_BxD = nn.Dropout(self.dropout)(pooled_BxD, deterministic=not train)
        return nn.Dense(self.num_outputs, name="head")(pooled_BxD)
