"""Seed 002 slide 9: a bidirectional LSTM with multi-head self-attention forecasting one value per window."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.models.recurrent import LSTM, Bidirectional

POOLINGS = ("last", "mean")


class StockForecaster(nn.Module):
    """[B, T, F] feature windows -> [B, 1] forecast (the seed's ``FinancialPredictor``).

    bi-LSTM(``hidden`` per direction, all steps) [B, T, 2·hidden] -> multi-head self-attention
    (``heads`` heads, ``attention_features`` query/key/value features) with a residual connection
    and layer norm -> pooling over time (``'last'`` step as in the seed, or ``'mean'``) ->
    Dense(``dense``) + ReLU -> dropout -> Dense(1). Defaults follow the seed: LSTM(128,
    bidirectional) and attention over 256 features with 8 heads. Dropout (rate ``dropout``, rng
    stream ``'dropout'``) acts on the pooled features and the attention weights only when ``train``.
    """

    hidden: int = 128
    heads: int = 8
    attention_features: int = 256
    dense: int = 64
    pooling: str = "last"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x_BxTxF: jax.Array, train: bool = False) -> jax.Array:
        """Forecast [B, 1] from windows [B, T, F]."""
        if x_BxTxF.ndim != 3:
            raise ValueError(f"x must have shape [B, T, F], got {x_BxTxF.shape}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.attention_features % self.heads:
            raise ValueError(
                f"attention_features must be divisible by heads, got {self.attention_features} and {self.heads}"
            )
        forward = LSTM(self.hidden, return_sequences=True, name="forward")
        backward = LSTM(self.hidden, return_sequences=True, name="backward")
        h_BxTxH2 = Bidirectional(forward, backward)(x_BxTxF, train=train)
        attended_BxTxH2 = nn.MultiHeadDotProductAttention(
            num_heads=self.heads,
            qkv_features=self.attention_features,
            out_features=h_BxTxH2.shape[-1],
            dropout_rate=self.dropout,
        )(h_BxTxH2, h_BxTxH2, deterministic=not train)
        z_BxTxH2 = nn.LayerNorm()(h_BxTxH2 + attended_BxTxH2)
        pooled_BxH2 = z_BxTxH2[:, -1] if self.pooling == "last" else jnp.mean(z_BxTxH2, axis=1)
        hidden_BxD = nn.relu(nn.Dense(self.dense)(pooled_BxH2))
        hidden_BxD = nn.Dropout(self.dropout)(hidden_BxD, deterministic=not train)
        return nn.Dense(1)(hidden_BxD)
