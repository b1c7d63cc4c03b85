"""Sentiment classifiers over right-padded token ids (seeds 001·12 and 003·15).

Both take ``ids_BxT`` int32 (``<pad>`` = 0 after each text) and return one logit per text [B, 1]
(positive class 1; the sigmoid lives in ``nnjax.losses.binary_classification``). The padding mask
is recovered from the ids, so padding never changes a logit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.models.layers import masked_mean, padding_mask
from nnjax.models.recurrent import LSTM


def keras_embedding_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Keras ``Embedding``'s default initializer: uniform on [-0.05, 0.05)."""
    return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


class SentimentLSTM(nn.Module):
    """Seed 003·15: Embedding(vocab, 128) -> LSTM(64, dropout 0.2, recurrent dropout 0.2) -> Dense(1).

    The LSTM runs over each text's real tokens only (mask ``ids != PAD_ID``); its final hidden
    state is the one at the last real token.
    """

    vocab_size: int = 10_000
    embed_dim: int = 128
    hidden: int = 64
    dropout: float = 0.2
    recurrent_dropout: float = 0.2

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids [B, T] -> logits [B, 1]."""
        mask_BxT = padding_mask(ids_BxT)
        x_BxTxE = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=keras_embedding_init)(ids_BxT)
        lstm = LSTM(self.hidden, dropout=self.dropout, recurrent_dropout=self.recurrent_dropout)
        h_BxH = lstm(x_BxTxE, mask=mask_BxT, train=train)
        return nn.Dense(1)(h_BxH)


class BagOfWords(nn.Module):
    """Seed 001·12's analyzer, trainable: masked mean of word embeddings -> Dense(hidden) ReLU -> Dense(1).

    The seed multiplies term counts by an embedding table (a sum of word vectors); the mean over
    the real tokens is the same up to each text's length and keeps the scale independent of it.
    ``hidden=0`` drops the hidden layer (a linear model of the mean embedding).
    """

    vocab_size: int = 5_000
    embed_dim: int = 100
    hidden: int = 64
    dropout: float = 0.0

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        """Token ids [B, T] -> logits [B, 1]."""
        mask_BxT = padding_mask(ids_BxT)
        x_BxTxE = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=keras_embedding_init)(ids_BxT)
        mean_BxE = masked_mean(x_BxTxE, mask_BxT)
        h_BxE = nn.Dropout(self.dropout)(mean_BxE, deterministic=not train)
        if self.hidden:
            h_BxE = nn.relu(nn.Dense(self.hidden)(h_BxE))
        return nn.Dense(1)(h_BxE)
