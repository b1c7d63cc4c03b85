"""Attention (seeds 001·9, 002·3) and transformer blocks (000·3, 000·5, 001·11) against independent oracles."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.models.attention import (
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    key_padding_mask,
    multi_head_attention,
    scaled_dot_product_attention,
)
from nnjax.models.transformer import EncoderBlock, TransformerEncoder, TransformerLM, sinusoidal_positions

Q, K, D = 4, 6, 8
sdpa = jax.jit(scaled_dot_product_attention)


def seed_attention(q, k, v, mask):
    """Seed 002·3 in numpy (additive -1e9 on masked scores), the oracle for rows with a valid key."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]) + (~mask) * -1e9
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ v, weights


@st.composite
def attention_inputs(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, n, D)).astype(np.float32) for n in (Q, K, K))
    mask = rng.random((2, Q, K)) < draw(st.floats(0.2, 1.0))
    return q, k, v, mask, rng


@settings(max_examples=30, deadline=None)
@given(attention_inputs())
def test_attention_properties(inputs):
    q, k, v, mask, rng = inputs
    out, weights = (np.asarray(a) for a in sdpa(q, k, v, mask))
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    assert (weights[~mask] == 0).all(), "masked keys get exactly zero weight"
    some = mask.any(-1)
    np.testing.assert_allclose(weights.sum(-1)[some], 1.0, rtol=1e-5)
    assert (weights[~some] == 0).all() and (out[~some] == 0).all(), "a fully masked row gives zeros, not NaN"
    ref_out, ref_weights = seed_attention(q, k, v, mask)
    np.testing.assert_allclose(out[some], ref_out[some], atol=1e-5)
    np.testing.assert_allclose(weights[some], ref_weights[some], atol=1e-6)
    perm = rng.permutation(K)  # permuting the keys (with their values and mask columns) changes nothing
    out_perm, weights_perm = sdpa(q, k[:, perm], v[:, perm], mask[:, :, perm])
    np.testing.assert_allclose(np.asarray(out_perm), out, atol=1e-5)
    np.testing.assert_allclose(np.asarray(weights_perm), weights[:, :, perm], atol=1e-6)


def test_masked_values_do_not_matter_and_gradients_stay_finite():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, n, D)).astype(np.float32) for n in (Q, K, K))
    mask = np.ones((1, Q, K), bool)
    mask[:, :, 4:] = False
    mask[:, 0] = False  # a fully masked query row
    v_changed = v.copy()
    v_changed[:, 4:] += 100.0
    np.testing.assert_allclose(sdpa(q, k, v, mask)[0], sdpa(q, k, v_changed, mask)[0], atol=1e-6)
    grads = jax.grad(lambda q, k, v: sdpa(q, k, v, mask)[0].sum(), argnums=(0, 1, 2))(q, k, v)
    assert all(np.isfinite(g).all() for g in grads)


def test_masks():
    np.testing.assert_array_equal(causal_mask(3), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(causal_mask(2, 5, offset=2), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    valid = np.array([[1, 1, 0]], bool)
    chex.assert_shape(key_padding_mask(valid), (1, 1, 1, 3))
    combined = combine_masks(key_padding_mask(valid), causal_mask(3)[None, None], None)
    np.testing.assert_array_equal(combined[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    assert combine_masks(None, None) is None


class MultiHeadTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_equals_flax_and_the_pure_function(self):
        """Same params in nnjax's module, its pure function and flax's MultiHeadDotProductAttention."""
        rng = np.random.default_rng(2)
        x_q = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
        x_kv = jnp.asarray(rng.standard_normal((2, 7, 12)), jnp.float32)
        mask = jnp.asarray(rng.random((2, 1, 5, 7)) < 0.7).at[..., 0].set(True)
        ours = MultiHeadAttention(num_heads=4, qkv_features=24, out_features=10)
        params = ours.init(jax.random.PRNGKey(0), x_q, x_kv)
        theirs = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=24, out_features=10)
        chex.assert_trees_all_equal_shapes(params, theirs.init(jax.random.PRNGKey(0), x_q, x_kv))
        out = self.variant(lambda p: ours.apply(p, x_q, x_kv, mask=mask))(params)
        chex.assert_shape(out, (2, 5, 10))
        pure = self.variant(lambda p: multi_head_attention(p["params"], x_q, x_kv, mask))(params)
        flax_out = self.variant(lambda p: theirs.apply(p, x_q, x_kv, mask=mask))(params)
        chex.assert_trees_all_close(out, flax_out, atol=1e-5)
        chex.assert_trees_all_close(out, pure, atol=0)


def test_kv_cache_decoding_equals_causal_attention():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 16))
    attention = MultiHeadAttention(num_heads=2)
    params = attention.init(jax.random.PRNGKey(1), x)["params"]
    full = attention.apply({"params": params}, x, mask=causal_mask(6)[None, None])
    cache = attention.init(jax.random.PRNGKey(1), jnp.zeros((2, 8, 16)), decode=True)["cache"]
    decode = jax.jit(lambda c, x: attention.apply({"params": params, "cache": c}, x, decode=True, mutable=["cache"]))
    outputs = []
    for piece in (x[:, :3], x[:, 3:4], x[:, 4:6]):  # a prompt, then one token, then two
        out, variables = decode(cache, piece)
        cache = variables["cache"]
        outputs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=1e-5)
    assert int(cache["cache_index"]) == 6


def test_post_ln_block_is_the_seed_formula():
    """Seed 001·11: x <- LN(x + MHA(x)); x <- LN(x + W2 relu(W1 x)), with the block's own weights."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
    block = EncoderBlock(8, 2, 16, norm="post", activation="relu")
    p = block.init(jax.random.PRNGKey(1), x)["params"]
    ln = lambda name, h: nn.LayerNorm().apply({"params": p[name]}, h)  # noqa: E731
    dense = lambda name, h: h @ p[name]["kernel"] + p[name]["bias"]  # noqa: E731

    @jax.jit
    def seed_formula(x):
        h = ln("ln_attention", x + multi_head_attention(p["attention"], x))
        return ln("ln_mlp", h + dense("mlp_out", jax.nn.relu(dense("mlp_in", h))))

    np.testing.assert_allclose(jax.jit(block.apply)({"params": p}, x), seed_formula(x), atol=1e-5)


def test_sinusoidal_positions_closed_form():
    pe = sinusoidal_positions(50, 6)
    t, i = 7, 2  # PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(...)
    np.testing.assert_allclose(pe[t, 2 * i], np.sin(t / 10000 ** (2 * i / 6)), rtol=1e-6)
    np.testing.assert_allclose(pe[t, 2 * i + 1], np.cos(t / 10000 ** (2 * i / 6)), rtol=1e-6)
    chex.assert_shape(sinusoidal_positions(4, 5), (4, 5))


@pytest.mark.parametrize(
    "options", [dict(norm="post", activation="relu", positional="sinusoidal"), dict(norm="pre", positional="sinusoidal")]
)
def test_padding_does_not_change_real_positions(options):
    """Seed 000·5's encoder (sinusoidal positions, padding mask): padded ids leave real tokens' states alone."""
    encoder = TransformerEncoder(vocab_size=20, max_len=12, d_model=16, num_heads=2, num_layers=2, d_ff=24, **options)
    ids = np.array([[3, 4, 5, 6, 0, 0, 0, 0]], np.int32)
    params = encoder.init(jax.random.PRNGKey(0), ids)
    apply = jax.jit(encoder.apply)
    short, padded = apply(params, ids[:, :4]), apply(params, ids)
    np.testing.assert_allclose(padded[:, :4], short, atol=1e-5)


LM = dict(vocab_size=11, block_size=12, d_model=16, num_heads=2, num_layers=2)


@pytest.fixture(scope="module")
def lm_params():
    return jax.jit(TransformerLM(**LM).init)(jax.random.PRNGKey(0), jnp.zeros((1, 12), jnp.int32))["params"]


def test_lm_is_causal_and_decodes_like_the_full_forward(lm_params):
    model = TransformerLM(**LM)
    ids = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 1, 11)
    full = jax.jit(model.apply)({"params": lm_params}, ids)
    chex.assert_shape(full, (2, 9, 11))
    changed = jax.jit(model.apply)({"params": lm_params}, ids.at[:, 5:].set(3))
    np.testing.assert_allclose(changed[:, :5], full[:, :5], atol=1e-5)  # the future never leaks back
    cache = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 12), jnp.int32), decode=True)["cache"]
    decode = jax.jit(lambda c, x: model.apply({"params": lm_params, "cache": c}, x, decode=True, mutable=["cache"]))
    pieces = []
    for start, stop in ((0, 5), (5, 6), (6, 7), (7, 8), (8, 9)):  # a prompt, then one token at a time
        logits, variables = decode(cache, ids[:, start:stop])
        cache = variables["cache"]
        pieces.append(logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        model.apply({"params": lm_params}, jnp.zeros((1, 13), jnp.int32))


def test_remat_leaves_gradients_unchanged():
    """Seed 002·4: rematerialisation trades memory for compute; the gradients must not move (1e-5)."""
    sizes = {**LM, "num_layers": 1}
    ids = jax.random.randint(jax.random.PRNGKey(2), (2, 12), 1, 11)
    params = TransformerLM(**sizes).init(jax.random.PRNGKey(0), ids)["params"]

    def grads(remat):
        model = TransformerLM(**sizes, remat=remat)
        return jax.jit(jax.grad(lambda p: model.apply({"params": p}, ids, train=True).std()))(params)

    chex.assert_trees_all_close(grads("full"), grads("none"), atol=1e-5)
