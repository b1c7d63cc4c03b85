"""Recurrent layers (seeds 001·10, 001·14, 003·11, 004·12) built on ``nnjax.scratch.rnn_cells``.

Layers take ``(x_BxTxD, mask=None, train=False)``: ``mask`` [B, T] marks real steps (1) and right
padding (0); dropout is active only with ``train=True`` and draws from the ``'dropout'`` rng stream.
``LSTM`` and ``SimpleRNN`` also take an ``initial_state`` (zeros by default) and, with
``return_state=True``, return their final state too, as ``torch.nn.LSTM``/``RNN`` do: an LSTM's state
is ``(c, h)`` (flax's carry order; torch returns ``(h, c)``), a simple RNN's is ``h``, each [B, H].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.scratch import rnn_cells


class _Recurrent(nn.Module):
    """Shared body of ``LSTM`` and ``SimpleRNN``: params, dropout masks, scan, output selection."""

    hidden: int
    return_sequences: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    kind = "lstm"

    @nn.compact
    def __call__(
        self,
        x_BxTxD: jax.Array,
        mask: jax.Array | None = None,
        train: bool = False,
        initial_state: Any = None,
        return_state: bool = False,
    ) -> Any:
        """[B, T, D] -> h at every step [B, T, H] (``return_sequences``) or the final h [B, H]; with
        ``return_state``, (that, the final state).

        With a mask the final h (and state) is the one at each sequence's last real step. ``dropout`` drops
        input features and ``recurrent_dropout`` drops the hidden state entering the recurrent
        kernel, each with one mask per sequence reused at every time step (Gal & Ghahramani).
        ``initial_state``: the LSTM's ``(c, h)`` or the RNN's ``h`` before the first step (default zeros).
        """
        for name in ("dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if x_BxTxD.ndim != 3:
            raise ValueError(f"x must have shape [B, T, D], got {x_BxTxD.shape}")
        init = rnn_cells.init_lstm if self.kind == "lstm" else rnn_cells.init_rnn
        params = self.param("cell", lambda key: init(key, x_BxTxD.shape[-1], self.hidden))
        x_BxTxD = nn.Dropout(self.dropout, broadcast_dims=(1,))(x_BxTxD, deterministic=not train)
        keep_BxH = None
        if train and self.recurrent_dropout > 0:
            rate = self.recurrent_dropout
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - rate, (x_BxTxD.shape[0], self.hidden))
            keep_BxH = keep.astype(x_BxTxD.dtype) / (1.0 - rate)
        run = rnn_cells.lstm if self.kind == "lstm" else rnn_cells.rnn
        h_BxTxH, carry = run(params, x_BxTxD, mask, initial_state, recurrent_keep_BxH=keep_BxH)
        out = h_BxTxH if self.return_sequences else carry[1] if self.kind == "lstm" else carry
        return (out, carry) if return_state else out


class LSTM(_Recurrent):
    """An LSTM layer (scratch cell, gates i, f, g, o): [B, T, D] -> [B, T, H] or final h [B, H]."""

    kind = "lstm"


class SimpleRNN(_Recurrent):
    """A simple tanh RNN layer (seed 003·11, ``torch.nn.RNN`` of 004·12): [B, T, D] -> [B, T, H] or [B, H]."""

    kind = "rnn"


class Bidirectional(nn.Module):
    """Run ``forward`` over time and ``backward`` over each sequence's reversed valid part; concatenate.

    ``forward``/``backward`` are recurrent layers (``LSTM``/``SimpleRNN``) with the same
    ``return_sequences``. With a (right-padding) mask the backward layer sees each sequence's real
    steps reversed and its padding last, so padding never reaches the real steps in either direction.
    Output: [B, T, 2H] (backward outputs re-aligned to forward time) or [B, 2H] (each direction's final h).
    """

    forward: nn.Module
    backward: nn.Module

    def __call__(self, x_BxTxD: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """[B, T, D] -> [B, T, H_f + H_b] or [B, H_f + H_b]."""
        y_fwd = self.forward(x_BxTxD, mask, train=train)
        y_bwd = self.backward(rnn_cells.reverse_padded(x_BxTxD, mask), mask, train=train)
        if y_bwd.ndim == 3:
            y_bwd = rnn_cells.reverse_padded(y_bwd, mask)
        return jnp.concatenate([y_fwd, y_bwd], axis=-1)


class LSTMForecaster(nn.Module):
    """Seed 001·14: an LSTM over a window [B, T, 1] and a Dense head -> the next value [B, 1]."""

    hidden: int = 50
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    @nn.compact
    def __call__(self, x_BxTx1: jax.Array, train: bool = False) -> jax.Array:
        """[B, T, D] window -> one-step forecast [B, 1]."""
        h_BxH = LSTM(self.hidden, dropout=self.dropout, recurrent_dropout=self.recurrent_dropout)(x_BxTx1, train=train)
        return nn.Dense(1)(h_BxH)
