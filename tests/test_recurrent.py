"""Scratch LSTM / simple RNN against flax's cells, gradients through the scan, masking, and the layers."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from nnjax.models import LSTM, Bidirectional, LSTMForecaster, SimpleRNN
from nnjax.scratch import rnn_cells

B, T, D, H = 3, 6, 2, 4
RUN = {  # jitted once per module so repeated shapes reuse the compiled scan
    "lstm": (rnn_cells.init_lstm, jax.jit(rnn_cells.lstm)),
    "rnn": (rnn_cells.init_rnn, jax.jit(rnn_cells.rnn)),
}
CELLS = {"lstm": jax.jit(rnn_cells.lstm_cell), "rnn": jax.jit(rnn_cells.rnn_cell)}


def step_by_step(kind, params, x_1xTxD):
    """Oracle without scan or mask: the cell applied in a Python loop over the steps of one sequence."""
    hidden = params["w_hh"].shape[0]
    zeros = jnp.zeros((1, hidden))
    carry = (zeros, zeros) if kind == "lstm" else zeros
    outputs = []
    for t in range(x_1xTxD.shape[1]):
        carry, h = CELLS[kind](params, carry, x_1xTxD[:, t])
        outputs.append(h[0])
    return jnp.stack(outputs), carry


def jit_apply(module):
    return jax.jit(module.apply, static_argnames=("train",))


def inputs(seed=0, batch=B, steps=T, features=D):
    return jax.random.normal(jax.random.PRNGKey(seed), (batch, steps, features))


def right_padding_mask(lengths, steps=T):
    return (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


def flax_loop(cell, variables, carry, x_BxTxD):
    """Oracle: the flax cell applied step by step in a Python loop: (outputs [B, T, H], final carry)."""
    step = jax.jit(cell.apply)
    outputs = []
    for t in range(x_BxTxD.shape[1]):
        carry, y = step(variables, carry, x_BxTxD[:, t])
        outputs.append(y)
    return jnp.stack(outputs, axis=1), carry


@pytest.mark.parametrize("cell_cls", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_lstm_matches_flax_cell(cell_cls):
    x = inputs()
    k_init, k_c, k_h = jax.random.split(jax.random.PRNGKey(1), 3)
    carry = (jax.random.normal(k_c, (B, H)), jax.random.normal(k_h, (B, H)))
    cell = cell_cls(H)
    variables = jax.jit(cell.init)(k_init, carry, x[:, 0])
    want_h, want_carry = flax_loop(cell, variables, carry, x)
    params = rnn_cells.from_flax_lstm(variables)
    chex.assert_shape([params["w_ih"], params["w_hh"], params["b"]], [(D, 4 * H), (H, 4 * H), (4 * H,)])
    got_h, got_carry = RUN["lstm"][1](params, x, initial_carry=carry)
    chex.assert_trees_all_close(got_h, want_h, atol=1e-5)
    chex.assert_trees_all_close(got_carry, want_carry, atol=1e-5)


def test_rnn_matches_flax_simple_cell():
    x = inputs()
    cell = nn.SimpleCell(H)
    h0 = jax.random.normal(jax.random.PRNGKey(2), (B, H))
    variables = jax.jit(cell.init)(jax.random.PRNGKey(1), h0, x[:, 0])
    want_h, want_carry = flax_loop(cell, variables, h0, x)
    got_h, got_carry = RUN["rnn"][1](rnn_cells.from_flax_simple(variables), x, initial_carry=h0)
    chex.assert_trees_all_close(got_h, want_h, atol=1e-5)
    chex.assert_trees_all_close(got_carry, want_carry, atol=1e-5)


def test_init_shapes_and_forget_bias():
    params = rnn_cells.init_lstm(jax.random.PRNGKey(0), D, H)
    chex.assert_shape([params["w_ih"], params["w_hh"], params["b"]], [(D, 4 * H), (H, 4 * H), (4 * H,)])
    np.testing.assert_array_equal(params["b"], np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    w_hh_f = params["w_hh"][:, H : 2 * H]
    np.testing.assert_allclose(w_hh_f.T @ w_hh_f, np.eye(H), atol=1e-5)  # orthogonal per gate
    simple = rnn_cells.init_rnn(jax.random.PRNGKey(0), D, H)
    chex.assert_shape([simple["w_ih"], simple["w_hh"], simple["b"]], [(D, H), (H, H), (H,)])
    with pytest.raises(ValueError, match="hidden_size"):
        rnn_cells.init_lstm(jax.random.PRNGKey(0), D, 0)


def test_gradient_through_scan():
    params = {
        "lstm": rnn_cells.init_lstm(jax.random.PRNGKey(0), D, H),
        "rnn": rnn_cells.init_rnn(jax.random.PRNGKey(1), D, H),
    }
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x = jnp.asarray(inputs(seed=2, batch=2, steps=4), jnp.float64)
        mask = jnp.asarray(right_padding_mask([4, 2], steps=4), jnp.float64)
        keep = jnp.asarray(np.tile([2.0, 0.0], (2, H // 2)), jnp.float64)

        def loss(params, x):
            total = 0.0
            for kind, run in (("lstm", rnn_cells.lstm), ("rnn", rnn_cells.rnn)):
                h_BxTxH, carry = run(params[kind], x, mask, recurrent_keep_BxH=keep)
                total += jnp.sum(jnp.sin(h_BxTxH)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))
            return total

        check_grads(jax.jit(loss), (params, x), order=1, modes=["rev"])


@settings(deadline=None, max_examples=8)
@given(lengths=st.lists(st.integers(1, T), min_size=B, max_size=B), kind=st.sampled_from(["lstm", "rnn"]))
def test_mask_holds_carry_like_unpadded(lengths, kind):
    init, run = RUN[kind]
    params = init(jax.random.PRNGKey(0), D, H)
    x = inputs(seed=3)
    mask = right_padding_mask(lengths)
    h_BxTxH, carry = run(params, x, jnp.asarray(mask))
    for b, n in enumerate(lengths):
        want_h, want_carry = step_by_step(kind, params, x[b : b + 1, :n])
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[b : b + 1], carry), want_carry, atol=1e-6)
        np.testing.assert_allclose(h_BxTxH[b, :n], want_h, atol=1e-6)
        np.testing.assert_array_equal(h_BxTxH[b, n:], 0.0)


def test_reverse_padded():
    x = np.arange(B * T, dtype=np.float32).reshape(B, T)
    lengths = [T, 2, 4]
    got = np.asarray(rnn_cells.reverse_padded(jnp.asarray(x), jnp.asarray(right_padding_mask(lengths))))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(got[b], np.r_[x[b, :n][::-1], x[b, n:]])
    np.testing.assert_array_equal(rnn_cells.reverse_padded(jnp.asarray(x)), x[:, ::-1])


def test_scan_rejects_bad_shapes():
    params = rnn_cells.init_rnn(jax.random.PRNGKey(0), D, H)
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        rnn_cells.rnn(params, jnp.zeros((T, D)))
    with pytest.raises(ValueError, match="mask"):
        rnn_cells.rnn(params, inputs(), jnp.ones((B, T + 1)))


@pytest.mark.parametrize("layer_cls", [LSTM, SimpleRNN])
def test_layer_shapes_and_masked_final_state(layer_cls):
    x = inputs()
    lengths = [T, 3, 1]
    mask = jnp.asarray(right_padding_mask(lengths))
    seq = layer_cls(H, return_sequences=True)
    last = layer_cls(H)
    init = rnn_cells.init_lstm if layer_cls is LSTM else rnn_cells.init_rnn
    variables = {"params": {"cell": init(jax.random.PRNGKey(0), D, H)}}
    want_shapes = jax.tree.map(jnp.shape, variables)
    assert jax.tree.map(jnp.shape, jax.eval_shape(seq.init, jax.random.PRNGKey(0), x)) == want_shapes
    chex.assert_shape(jit_apply(seq)(variables, x, mask), (B, T, H))
    apply_last = jit_apply(last)
    final = apply_last(variables, x, mask)
    chex.assert_shape(final, (B, H))
    kind = "lstm" if layer_cls is LSTM else "rnn"
    for b, n in enumerate(lengths):
        _, carry = step_by_step(kind, variables["params"]["cell"], x[b : b + 1, :n])
        want = carry[1] if kind == "lstm" else carry
        np.testing.assert_allclose(final[b], want[0], atol=1e-6)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_mask_equals_unpadded(return_sequences):
    x = inputs(seed=4)
    lengths = [2, T, 4]
    mask = jnp.asarray(right_padding_mask(lengths))
    model = Bidirectional(LSTM(H, return_sequences), SimpleRNN(3, return_sequences))
    variables = {"params": {
        "forward": lstm_variables()["params"],
        "backward": {"cell": rnn_cells.init_rnn(jax.random.PRNGKey(1), D, 3)},
    }}
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(model.init, jax.random.PRNGKey(0), x, mask))
    assert shapes == jax.tree.map(jnp.shape, variables)
    got = jit_apply(model)(variables, x, mask)
    chex.assert_shape(got, (B, T, H + 3) if return_sequences else (B, H + 3))
    p = variables["params"]
    for b, n in enumerate(lengths):
        x_b = x[b : b + 1, :n]
        h_fwd, (_, last_fwd) = step_by_step("lstm", p["forward"]["cell"], x_b)
        h_bwd, last_bwd = step_by_step("rnn", p["backward"]["cell"], x_b[:, ::-1])
        if return_sequences:
            want = np.concatenate([h_fwd, h_bwd[::-1]], axis=-1)
            np.testing.assert_allclose(got[b, :n], want, atol=1e-6)
            np.testing.assert_array_equal(got[b, n:], 0.0)
        else:
            np.testing.assert_allclose(got[b], np.concatenate([last_fwd[0], last_bwd[0]]), atol=1e-6)


def lstm_variables(seed=0):
    return {"params": {"cell": rnn_cells.init_lstm(jax.random.PRNGKey(seed), D, H)}}


def test_recurrent_dropout_only_in_train():
    x = inputs(seed=5)
    variables = lstm_variables()
    reference = jnp.stack([step_by_step("lstm", variables["params"]["cell"], x[b : b + 1])[0] for b in range(B)])
    apply = jit_apply(LSTM(H, return_sequences=True, recurrent_dropout=0.5))
    np.testing.assert_allclose(apply(variables, x, train=False), reference, atol=1e-6)
    rngs = {"dropout": jax.random.PRNGKey(7)}
    train_out = apply(variables, x, train=True, rngs=rngs)
    np.testing.assert_array_equal(apply(variables, x, train=True, rngs=rngs), train_out)
    assert not np.allclose(train_out, reference)
    np.testing.assert_allclose(train_out[:, 0], reference[:, 0], atol=1e-6)  # h_0 = 0: dropping it changes nothing
    with pytest.raises(ValueError, match="recurrent_dropout"):
        LSTM(H, recurrent_dropout=1.0).init(jax.random.PRNGKey(0), x)


def test_input_dropout_only_in_train_and_fixed_across_time():
    # no recurrence (w_hh = 0) and a closed forget gate (f ≈ 0): h_t is a function of the dropped x_t alone,
    # so constant inputs give time-constant outputs exactly when the dropout mask is the same at every step
    x = jnp.ones((8, T, 16))
    cell = {
        "w_ih": jax.random.normal(jax.random.PRNGKey(0), (16, 4 * H)),
        "w_hh": jnp.zeros((H, 4 * H)),
        "b": jnp.zeros(4 * H).at[H : 2 * H].set(-1e4),
    }
    variables = {"params": {"cell": cell}}
    apply = jit_apply(LSTM(H, return_sequences=True, dropout=0.5))
    out = apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    np.testing.assert_allclose(out, jnp.repeat(out[:, :1], T, axis=1), atol=1e-6)
    evaluated = apply(variables, x, train=False)
    np.testing.assert_allclose(evaluated[:1], step_by_step("lstm", cell, x[:1])[0][None], atol=1e-6)
    assert not np.allclose(out, evaluated)


def test_forecaster_shapes():
    model = LSTMForecaster(hidden=8)
    x = jax.ShapeDtypeStruct((B, T, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    cell_shapes = {"cell": {"w_ih": (1, 32), "w_hh": (8, 32), "b": (32,)}}
    assert jax.tree.map(jnp.shape, variables["params"]["LSTM_0"]) == cell_shapes
    assert jax.eval_shape(model.apply, variables, x).shape == (B, 1)
