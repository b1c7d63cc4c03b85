"""Recurrent cells from scratch (seeds 001·10, 003·11, 004·12): an LSTM and a simple (Elman) RNN.

Params are plain pytrees of three arrays, shared by both cells:

* ``w_ih`` [D, G·H]: input-to-hidden kernel, ``x_BxD @ w_ih``;
* ``w_hh`` [H, G·H]: hidden-to-hidden (recurrent) kernel, ``h_BxH @ w_hh``;
* ``b`` [G·H]: bias,

with ``G = 4`` LSTM gates stacked in the order (i, f, g, o) — input gate, forget gate, candidate
cell ``g`` (the seed's ``c̃``) and output gate — and ``G = 1`` for the simple RNN. The seed's
``W_f [h, x]`` on the concatenation ``[h_{t-1}, x_t]`` is the same as ``x @ w_ih + h @ w_hh`` with
the kernel split in two and transposed (examples on the leading axis).

Sequences are batch-major [B, T, D]; ``lstm``/``rnn`` scan over time with ``jax.lax.scan``
(time-major inside). An optional ``mask_BxT`` makes the recurrence padding-aware: where the mask
is 0 the carry is held unchanged and the output is 0, so the final carry of a right-padded sequence
equals the final carry of the unpadded one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
LSTMCarry = tuple[jax.Array, jax.Array]
GATES = ("i", "f", "g", "o")


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init(key: jax.Array, input_size: int, hidden_size: int, gates: int) -> Params:
    """Glorot-uniform input kernel, orthogonal recurrent kernel (per gate), zero bias (Keras defaults).

    Jitted (once per shape): run eagerly, each of its small ops would be dispatched and compiled.
    """
    if input_size < 1 or hidden_size < 1:
        raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size} and {hidden_size}")
    k_ih, k_hh = jax.random.split(key)
    w_ih = jax.nn.initializers.glorot_uniform()(k_ih, (input_size, gates * hidden_size), jnp.float32)
    keys = jax.random.split(k_hh, gates)
    orthogonal = jax.nn.initializers.orthogonal()
    w_hh = jnp.concatenate([orthogonal(k, (hidden_size, hidden_size), jnp.float32) for k in keys], axis=1)
    return {"w_ih": w_ih, "w_hh": w_hh, "b": jnp.zeros((gates * hidden_size,), jnp.float32)}


def init_lstm(key: jax.Array, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> Params:
    """LSTM params ``{'w_ih': [D, 4H], 'w_hh': [H, 4H], 'b': [4H]}``, gates (i, f, g, o).

    The forget-gate bias starts at ``forget_bias`` (1, as Keras' ``unit_forget_bias``) so the cell
    remembers by default early in training; the other biases start at 0.
    """
    params = _init(key, input_size, hidden_size, len(GATES))
    params["b"] = params["b"].at[hidden_size : 2 * hidden_size].set(forget_bias)
    return params


def init_rnn(key: jax.Array, input_size: int, hidden_size: int) -> Params:
    """Simple RNN params ``{'w_ih': [D, H], 'w_hh': [H, H], 'b': [H]}``."""
    return _init(key, input_size, hidden_size, 1)


def lstm_zero_carry(batch_size: int, hidden_size: int, dtype: Any = jnp.float32) -> LSTMCarry:
    """The zero LSTM carry ``(c, h)``, each [B, H]."""
    zeros = jnp.zeros((batch_size, hidden_size), dtype)
    return zeros, zeros


def lstm_cell(params: Params, carry: LSTMCarry, x_BxD: jax.Array) -> tuple[LSTMCarry, jax.Array]:
    """One LSTM step: ``((c, h), x_t) -> ((c', h'), h')``, each state [B, H].

    ``i, f, o = σ(·)``, ``g = tanh(·)`` of ``x_t @ w_ih + h @ w_hh + b`` split in (i, f, g, o);
    ``c' = f ⊙ c + i ⊙ g`` and ``h' = o ⊙ tanh(c')``.
    """
    c_BxH, h_BxH = carry
    z_Bx4H = x_BxD @ params["w_ih"] + h_BxH @ params["w_hh"] + params["b"]
    i, f, g, o = jnp.split(z_Bx4H, 4, axis=-1)
    c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH


def rnn_cell(params: Params, h_BxH: jax.Array, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One simple-RNN step: ``h' = tanh(x_t @ w_ih + h @ w_hh + b)``; returns ``(h', h')``, [B, H]."""
    h_BxH = jnp.tanh(x_BxD @ params["w_ih"] + h_BxH @ params["w_hh"] + params["b"])
    return h_BxH, h_BxH


def _drop_h(carry: Any, keep_BxH: jax.Array | None) -> Any:
    """The carry with its hidden state ``h`` multiplied by ``keep_BxH`` (recurrent dropout)."""
    if keep_BxH is None:
        return carry
    if isinstance(carry, tuple):
        c, h = carry
        return c, h * keep_BxH
    return carry * keep_BxH


def scan_cell(
    cell: Callable[[Params, Any, jax.Array], tuple[Any, jax.Array]],
    params: Params,
    x_BxTxD: jax.Array,
    carry: Any,
    mask_BxT: jax.Array | None = None,
    recurrent_keep_BxH: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Run ``cell`` over the time axis of ``x_BxTxD`` from ``carry``: (outputs [B, T, H], final carry).

    Where ``mask_BxT`` is 0 the carry is held and the output is 0. ``recurrent_keep_BxH`` (a scaled
    dropout keep-mask, the same at every step — Gal & Ghahramani's variational dropout) multiplies
    the previous hidden state where it enters the recurrent kernel; the carried state itself is not
    dropped. Both cells use ``h`` only through ``h @ w_hh``, so this is exactly that.
    """
    if x_BxTxD.ndim != 3:
        raise ValueError(f"x must have shape [B, T, D], got {x_BxTxD.shape}")
    batch, steps = x_BxTxD.shape[:2]
    if mask_BxT is None:
        mask_BxT = jnp.ones((batch, steps), x_BxTxD.dtype)
    elif mask_BxT.shape != (batch, steps):
        raise ValueError(f"mask must have shape [B, T] = {(batch, steps)}, got {mask_BxT.shape}")

    def step(carry, inputs):
        x_BxD, m_B = inputs
        new_carry, y_BxH = cell(params, _drop_h(carry, recurrent_keep_BxH), x_BxD)
        keep_Bx1 = (m_B > 0)[:, None]
        carry = jax.tree.map(lambda new, old: jnp.where(keep_Bx1, new, old), new_carry, carry)
        return carry, jnp.where(keep_Bx1, y_BxH, 0.0)

    carry, y_TxBxH = jax.lax.scan(step, carry, (jnp.swapaxes(x_BxTxD, 0, 1), jnp.swapaxes(mask_BxT, 0, 1)))
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


def lstm(
    params: Params,
    x_BxTxD: jax.Array,
    mask_BxT: jax.Array | None = None,
    initial_carry: LSTMCarry | None = None,
    recurrent_keep_BxH: jax.Array | None = None,
) -> tuple[jax.Array, LSTMCarry]:
    """An LSTM over a batch of sequences: (h at every step [B, T, H], final carry (c, h)).

    ``initial_carry`` defaults to zeros; see ``scan_cell`` for the mask and recurrent dropout.
    """
    hidden = params["w_hh"].shape[0]
    dtype = jnp.result_type(x_BxTxD, params["w_hh"])
    carry = lstm_zero_carry(x_BxTxD.shape[0], hidden, dtype) if initial_carry is None else initial_carry
    return scan_cell(lstm_cell, params, x_BxTxD, carry, mask_BxT, recurrent_keep_BxH)


def rnn(
    params: Params,
    x_BxTxD: jax.Array,
    mask_BxT: jax.Array | None = None,
    initial_carry: jax.Array | None = None,
    recurrent_keep_BxH: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A simple tanh RNN over a batch of sequences: (h at every step [B, T, H], final h [B, H])."""
    hidden = params["w_hh"].shape[0]
    dtype = jnp.result_type(x_BxTxD, params["w_hh"])
    carry = jnp.zeros((x_BxTxD.shape[0], hidden), dtype) if initial_carry is None else initial_carry
    return scan_cell(rnn_cell, params, x_BxTxD, carry, mask_BxT, recurrent_keep_BxH)


def reverse_padded(x_BxTx: jax.Array, mask_BxT: jax.Array | None = None) -> jax.Array:
    """Reverse each sequence's valid (mask = 1) prefix in time; padding stays where it is.

    Assumes right padding (each mask row is ones then zeros). The map is its own inverse, so it
    also puts a backward pass's outputs back in forward time order.
    """
    steps = x_BxTx.shape[1]
    if mask_BxT is None:
        return jnp.flip(x_BxTx, axis=1)
    length_Bx1 = jnp.sum(mask_BxT > 0, axis=1, keepdims=True)
    t_BxT = jnp.arange(steps)[None, :]
    idx_BxT = jnp.where(t_BxT < length_Bx1, length_Bx1 - 1 - t_BxT, t_BxT)
    idx = idx_BxT.reshape(idx_BxT.shape + (1,) * (x_BxTx.ndim - 2))
    return jnp.take_along_axis(x_BxTx, idx, axis=1)


def from_flax_lstm(flax_params: dict[str, Any]) -> Params:
    """Convert ``flax.linen.LSTMCell`` / ``OptimizedLSTMCell`` params to the scratch layout.

    Both flax cells store one Dense per gate and side: ``'ii', 'if', 'ig', 'io'`` (input kernels
    [D, H], no bias) and ``'hi', 'hf', 'hg', 'ho'`` (recurrent kernels [H, H] with biases [H]),
    with the same activations (σ for i, f, o; tanh for g) and carry ``(c, h)``. The scratch kernels
    are their concatenation along the output axis in the gate order (i, f, g, o):
    ``w_ih = [ii | if | ig | io]``, ``w_hh = [hi | hf | hg | ho]``, ``b = [bhi | bhf | bhg | bho]``.
    Accepts the cell's variables dict or its ``'params'`` entry.
    """
    p = flax_params.get("params", flax_params)
    return {
        "w_ih": jnp.concatenate([p[f"i{g}"]["kernel"] for g in GATES], axis=1),
        "w_hh": jnp.concatenate([p[f"h{g}"]["kernel"] for g in GATES], axis=1),
        "b": jnp.concatenate([p[f"h{g}"]["bias"] for g in GATES]),
    }


def from_flax_simple(flax_params: dict[str, Any]) -> Params:
    """Convert ``flax.linen.SimpleCell`` params (``'i'``: kernel [D, H] + bias, ``'h'``: kernel [H, H]) to scratch."""
    p = flax_params.get("params", flax_params)
    return {"w_ih": p["i"]["kernel"], "w_hh": p["h"]["kernel"], "b": p["i"]["bias"]}
