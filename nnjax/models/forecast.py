"""Forecasters that mix an LSTM with multi-head self-attention.

``StockForecaster`` (seed 002 slide 9): a bidirectional LSTM with self-attention forecasting one
value per window. ``TimeSeriesTransformer`` (seed 000 slide 10): stacked LSTMs, masked
self-attention and a feed-forward block giving one output per time step; ``TimeSeriesForecaster``
turns its last valid step into a one-step forecast.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.models.attention import MultiHeadAttention, causal_mask, combine_masks, key_padding_mask
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


class TimeSeriesTransformer(nn.Module):
    """[B, T, F] series (+ optional valid mask [B, T]) -> [B, T, F] per-step outputs (seed 000·10).

    ``num_layers`` stacked LSTMs (``hidden`` units, all steps) [B, T, H] -> multi-head
    self-attention (``heads`` heads over H features) whose keys are the valid steps (and, with
    ``causal``, only steps <= the query's) -> Add & LayerNorm -> FFN (Dense 4·H, GELU, Dense H) ->
    Add & LayerNorm -> Dense(F) at every step. Defaults are the seed's example (hidden 256, 2
    layers, 8 heads).

    ``mask_BxT`` (True/1 = real step) makes padding inert: the LSTMs hold their state over masked
    steps and attention never looks at them, so the outputs at valid steps do not depend on the
    inputs at masked ones (outputs at masked steps are meaningless). The LSTM runs forward in
    time, so each output depends on its own and earlier steps only; with ``causal`` the whole
    model does. Dropout (rate ``dropout``, rng stream ``'dropout'``, only when ``train``) acts
    between LSTM layers, on the attention weights and on each residual branch.
    """

    hidden: int = 256
    num_layers: int = 2
    heads: int = 8
    causal: bool = False
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x_BxTxF: jax.Array, mask_BxT: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Per-step outputs [B, T, F] from inputs [B, T, F] and an optional valid mask [B, T]."""
        check_series_input(x_BxTxF, mask_BxT)
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads, got {self.hidden} and {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        h_BxTxH = x_BxTxF
        for layer in range(self.num_layers):
            between_layers = self.dropout if layer else 0.0
            lstm = LSTM(self.hidden, return_sequences=True, dropout=between_layers, name=f"lstm_{layer}")
            h_BxTxH = lstm(h_BxTxH, mask_BxT, train=train)
        steps = x_BxTxF.shape[1]
        mask = combine_masks(
            None if mask_BxT is None else key_padding_mask(mask_BxT),
            causal_mask(steps)[None, None] if self.causal else None,
        )
        drop = nn.Dropout(self.dropout, deterministic=not train)
        attended_BxTxH = MultiHeadAttention(self.heads, dropout_rate=self.dropout, name="attention")(
            h_BxTxH, mask=mask, train=train
        )
        z_BxTxH = nn.LayerNorm(name="norm1")(h_BxTxH + drop(attended_BxTxH))
        ffn_BxTxH = nn.Dense(self.hidden, name="ffn_out")(nn.gelu(nn.Dense(4 * self.hidden, name="ffn_in")(z_BxTxH)))
        z_BxTxH = nn.LayerNorm(name="norm2")(z_BxTxH + drop(ffn_BxTxH))
        return nn.Dense(x_BxTxF.shape[-1], name="output")(z_BxTxH)


class TimeSeriesForecaster(nn.Module):
    """A per-step ``model`` ([B, T, F] -> [B, T, F]) as a one-step forecaster: [B, T, F] -> [B, 1].

    The forecast is output feature ``target`` at each sequence's last valid step (the last step
    when there is no mask): with windows of a series as input, the model's reading of the value
    after the window.
    """

    model: nn.Module
    target: int = 0

    def __call__(self, x_BxTxF: jax.Array, mask_BxT: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Forecast [B, 1] from windows [B, T, F] and an optional valid mask [B, T]."""
        check_series_input(x_BxTxF, mask_BxT)
        if not 0 <= self.target < x_BxTxF.shape[-1]:
            raise ValueError(f"target must index one of the {x_BxTxF.shape[-1]} features, got {self.target}")
        y_BxTxF = self.model(x_BxTxF, mask_BxT, train=train)
        return last_valid_step(y_BxTxF, mask_BxT)[:, self.target, None]


def last_valid_step(y_BxTxF: jax.Array, mask_BxT: jax.Array | None = None) -> jax.Array:
    """[B, F]: each sequence's values at its last step where ``mask`` is True (the last step without a mask).

    A row with no valid step gives its step 0.
    """
    if mask_BxT is None:
        return y_BxTxF[:, -1]
    t_BxT = jnp.arange(y_BxTxF.shape[1])[None, :]
    last_B = jnp.max(jnp.where(mask_BxT.astype(bool), t_BxT, 0), axis=1)
    return jnp.take_along_axis(y_BxTxF, last_B[:, None, None], axis=1)[:, 0]


def check_series_input(x_BxTxF: jax.Array, mask_BxT: jax.Array | None) -> None:
    """ValueError unless ``x`` is [B, T, F] and ``mask`` is None or [B, T]."""
    if x_BxTxF.ndim != 3:
        raise ValueError(f"x must have shape [B, T, F], got {x_BxTxF.shape}")
    if mask_BxT is not None and mask_BxT.shape != x_BxTxF.shape[:2]:
        raise ValueError(f"mask must have shape [B, T] = {x_BxTxF.shape[:2]}, got {mask_BxT.shape}")
