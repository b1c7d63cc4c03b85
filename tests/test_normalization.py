"""Scratch batch norm and inverted dropout against flax.linen.BatchNorm / Dropout and binomial statistics."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.scratch import normalization

EPS = 1e-5
shapes = st.one_of(
    st.tuples(st.integers(2, 16), st.integers(1, 8)),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 5)).filter(
        lambda s: s[0] * s[1] * s[2] > 1
    ),
)


def _inputs(seed, shape, steps):
    """``steps`` batches with feature-dependent offsets and scales (so statistics matter)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), steps + 1)
    offset = jax.random.normal(keys[0], shape[-1:])
    return [offset + (1.0 + offset**2) * jax.random.normal(k, shape) for k in keys[1:]]


def _scratch_and_flax_runs(xs_SxBx, fast_variance):
    """Scratch BN and flax BN over the S batches of ``xs_SxBx`` from the same params/stats, then eval."""
    num_features = xs_SxBx.shape[-1]
    gamma = 1.0 + 0.1 * jnp.arange(num_features, dtype=jnp.float32)
    beta = 0.5 - 0.2 * jnp.arange(num_features, dtype=jnp.float32)
    params, state = normalization.init_batch_norm(num_features)
    params = {"gamma": gamma, "beta": beta}
    flax_bn = nn.BatchNorm(momentum=0.9, epsilon=EPS, use_fast_variance=fast_variance)
    flax_stats = flax_bn.init(jax.random.PRNGKey(0), xs_SxBx[0], use_running_average=False)["batch_stats"]
    flax_params = {"scale": gamma, "bias": beta}
    ours, theirs = {"init": state}, {"init": flax_stats}
    for i, x in enumerate(xs_SxBx):
        y, state = normalization.batch_norm(params, state, x, train=True, momentum=0.9, eps=EPS)
        flax_y, updates = flax_bn.apply(
            {"params": flax_params, "batch_stats": flax_stats}, x, use_running_average=False, mutable=["batch_stats"]
        )
        flax_stats = updates["batch_stats"]
        ours[f"step{i}"], theirs[f"step{i}"] = (y, state), (flax_y, flax_stats)
    eval_y, eval_state = normalization.batch_norm(params, state, xs_SxBx[0], train=False, eps=EPS)
    ours["eval"] = (eval_y, eval_state)
    flax_eval = flax_bn.apply({"params": flax_params, "batch_stats": flax_stats}, xs_SxBx[0], use_running_average=True)
    theirs["eval"] = (flax_eval, flax_stats)
    return ours, theirs


@settings(deadline=None, max_examples=6)
@given(shape=shapes, seed=st.integers(0, 2**16), fast_variance=st.booleans())
def test_batch_norm_matches_flax_over_steps_in_train_and_eval(shape, seed, fast_variance):
    xs_SxBx = jnp.stack(_inputs(seed, shape, steps=3))
    ours, theirs = jax.jit(_scratch_and_flax_runs, static_argnums=1)(xs_SxBx, fast_variance)
    chex.assert_shape(ours["step0"][0], shape)
    tolerance = 1e-5
    if fast_variance:  # flax's E[x^2] - E[x]^2 loses ~eps32 * mean^2 / var of the variance to cancellation
        x_SxNxD = np.asarray(xs_SxBx, np.float64).reshape(3, -1, shape[-1])
        condition = np.max(x_SxNxD.mean(1) ** 2 / np.maximum(x_SxNxD.var(1), EPS))
        tolerance += 4 * np.finfo(np.float32).eps * condition
    chex.assert_trees_all_close(ours, theirs, atol=tolerance, rtol=tolerance)


def test_batch_norm_eval_leaves_running_statistics_untouched():
    params, state = normalization.init_batch_norm(3)
    _, eval_state = normalization.batch_norm(params, state, jnp.ones((4, 3)), train=False)
    assert eval_state is state


@settings(deadline=None, max_examples=4)
@given(shape=shapes, seed=st.integers(0, 2**16), train=st.booleans())
def test_batch_norm_gradient_equals_grad_through_flax(shape, seed, train):
    x = _inputs(seed, shape, steps=1)[0]
    w = jax.random.normal(jax.random.PRNGKey(seed + 1), shape)
    params, state = normalization.init_batch_norm(shape[-1])
    state = {"mean": 0.1 * jnp.ones(shape[-1]), "var": 2.0 * jnp.ones(shape[-1])}
    flax_bn = nn.BatchNorm(momentum=0.9, epsilon=EPS, use_fast_variance=False)

    def scratch_loss(params, x):
        return jnp.sum(w * normalization.batch_norm(params, state, x, train=train, eps=EPS)[0])

    def flax_loss(flax_params, x):
        y = flax_bn.apply(
            {"params": flax_params, "batch_stats": state}, x, use_running_average=not train, mutable=["batch_stats"]
        )[0]
        return jnp.sum(w * y)

    both_grads = jax.jit(
        lambda params, x: (
            jax.grad(scratch_loss, argnums=(0, 1))(params, x),
            jax.grad(flax_loss, argnums=(0, 1))({"scale": params["gamma"], "bias": params["beta"]}, x),
        )
    )
    (g_params, g_x), (f_params, f_x) = both_grads(params, x)
    chex.assert_trees_all_close(
        (g_params["gamma"], g_params["beta"], g_x), (f_params["scale"], f_params["bias"], f_x), atol=1e-5, rtol=1e-5
    )


def test_batch_norm_train_output_is_standardised_per_feature():
    x = _inputs(3, (64, 5), steps=1)[0]
    y, _ = normalization.batch_norm(*normalization.init_batch_norm(5), x, train=True, eps=1e-8)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "x_shape, features, message",
    [((4,), 4, "rank >= 2"), ((4, 3), 5, r"shape \(3,\)")],
)
def test_batch_norm_rejects_bad_shapes(x_shape, features, message):
    params, state = normalization.init_batch_norm(features)
    with pytest.raises(ValueError, match=message):
        normalization.batch_norm(params, state, jnp.ones(x_shape), train=True)


@settings(deadline=None, max_examples=6)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    rate=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**16),
)
def test_dropout_equals_flax_for_the_same_key(shape, rate, seed):
    key = jax.random.PRNGKey(seed)
    x = jax.random.normal(jax.random.fold_in(key, 1), shape)
    both = jax.jit(
        lambda key, x: (
            normalization.dropout(key, x, rate, train=True),
            nn.Dropout(rate).apply({}, x, deterministic=False, rng=key),
        )
    )
    ours, theirs = both(key, x)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(normalization.dropout(key, x, rate, train=False), x)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_keeps_expectation_and_drops_rate_fraction(rate):
    n = 200_000
    x = jnp.full((n,), 2.0)
    y = normalization.dropout(jax.random.PRNGKey(7), x, rate, train=True)
    keep = 1.0 - rate
    kept = np.asarray(y != 0)
    np.testing.assert_allclose(np.asarray(y)[kept], 2.0 / keep, rtol=1e-6)
    # Each output is 2 * Bernoulli(keep) / keep: mean 2, standard error 2 sqrt(rate / keep / n).
    assert abs(float(y.mean()) - 2.0) < 5 * 2.0 * np.sqrt(rate / keep / n)
    assert abs((1.0 - kept.mean()) - rate) < 5 * np.sqrt(rate * keep / n)


def test_dropout_rate_zero_is_identity_and_gradient_is_mask_over_keep():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (8, 6))
    np.testing.assert_array_equal(normalization.dropout(key, x, 0.0, train=True), x)
    grad = jax.grad(lambda x: normalization.dropout(key, x, 0.25, train=True).sum())(x)
    mask = normalization.dropout(key, jnp.ones_like(x), 0.25, train=True)
    np.testing.assert_array_equal(grad, mask)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rejects_rates_outside_unit_interval(rate):
    with pytest.raises(ValueError, match=r"rate must be a drop probability in \[0, 1\)"):
        normalization.dropout(jax.random.PRNGKey(0), jnp.ones(3), rate, train=True)
