"""Hand-written activation derivatives vs autodiff, softmax stability, and the activations demo."""

import json
import os

import chex
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_experiment
from hypothesis import given, settings

from nnjax.scratch import activations

EXTREMES = [0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 88.0, -88.0, 1e4, -1e4]
elements = st.one_of(st.floats(-30, 30, width=32), st.sampled_from(EXTREMES))
z_arrays = hnp.arrays(np.float32, (16,), elements=elements)


@pytest.fixture(scope="module")
def derivative_pairs():
    """Per activation, one jitted function returning (f(z), hand-written f'(z), jax.vmap(jax.grad(f))(z))."""
    return {
        name: jax.jit(lambda z, f=f, f_prime=f_prime: (f(z), f_prime(z), jax.vmap(jax.grad(f))(z)))
        for name, (f, f_prime) in activations.ACTIVATIONS.items()
    }


@pytest.mark.parametrize("name", list(activations.ACTIVATIONS))
@settings(deadline=None, max_examples=25)
@given(z=z_arrays)
def test_derivative_matches_autodiff(derivative_pairs, name, z):
    values, by_hand, by_autodiff = derivative_pairs[name](jnp.asarray(z))
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(by_hand))
    np.testing.assert_allclose(by_hand, by_autodiff, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(activations.ACTIVATIONS))
def test_derivative_at_kink_and_large_inputs(derivative_pairs, name):
    z = np.resize(np.asarray(EXTREMES, np.float32), 16)
    values, by_hand, by_autodiff = derivative_pairs[name](jnp.asarray(z))
    np.testing.assert_allclose(by_hand, by_autodiff, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(values))


def test_parametrized_slopes_match_autodiff():
    z = jnp.linspace(-3.0, 3.0, 13)
    for f, f_prime, kw in ((activations.leaky_relu, activations.leaky_relu_prime, {"negative_slope": 0.2}),
                           (activations.elu, activations.elu_prime, {"alpha": 1.7})):
        by_hand, expected = jax.jit(lambda z: (f_prime(z, **kw), jax.vmap(jax.grad(lambda v: f(v, **kw)))(z)))(z)
        np.testing.assert_allclose(by_hand, expected, rtol=1e-6, atol=1e-7)


@jax.jit
def _softmax_and_oracle(z):
    return activations.softmax(z), jax.nn.softmax(z, axis=-1)


@jax.jit
def _jacobian_and_oracle(z_K):
    return activations.softmax_jacobian(z_K), jax.jacobian(jax.nn.softmax)(z_K)


@jax.jit
def _vjp_and_oracle(z, g):
    _, vjp = jax.vjp(lambda v: jax.nn.softmax(v, axis=-1), z)
    return activations.softmax_vjp(z, g), vjp(g)[0]


logits = hnp.arrays(
    np.float32, (3, 5), elements=st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([0.0, 1e30, -1e30, 3e38, -3e38]))
)


@settings(deadline=None, max_examples=25)
@given(z_3x5=logits)
def test_softmax_is_stable_and_matches_jax(z_3x5):
    s, expected = _softmax_and_oracle(jnp.asarray(z_3x5))
    chex.assert_shape(s, (3, 5))
    assert np.all(np.isfinite(s)) and np.all(s >= 0)
    np.testing.assert_allclose(np.sum(s, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(s, expected, atol=1e-6)


moderate = hnp.arrays(np.float32, (5,), elements=st.floats(-20, 20, width=32))


@settings(deadline=None, max_examples=25)
@given(z_5=moderate)
def test_softmax_jacobian_matches_autodiff(z_5):
    np.testing.assert_allclose(*_jacobian_and_oracle(jnp.asarray(z_5)), atol=1e-6)


@settings(deadline=None, max_examples=25)
@given(z_3x5=hnp.arrays(np.float32, (3, 5), elements=st.floats(-20, 20, width=32)),
       g_3x5=hnp.arrays(np.float32, (3, 5), elements=st.floats(-5, 5, width=32)))
def test_softmax_vjp_matches_jax_vjp(z_3x5, g_3x5):
    np.testing.assert_allclose(*_vjp_and_oracle(jnp.asarray(z_3x5), jnp.asarray(g_3x5)), atol=1e-5)


def test_activations_demo(tmp_path):
    done = run_experiment("experiments.activations", "--workdir", str(tmp_path), "--num-points", "21")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["max_derivative_error"]) == {*activations.ACTIVATIONS, "softmax_jacobian"}
    assert max(result["max_derivative_error"].values()) < 1e-6
    assert result["error_points"] == 21 + 5
    seed = result["seed_001_5"]
    z = np.arange(-2.0, 3.0)
    np.testing.assert_allclose(seed["z"], z)
    np.testing.assert_allclose(seed["relu"], np.maximum(z, 0))
    np.testing.assert_allclose(seed["relu_derivative"], (z > 0).astype(float))
    np.testing.assert_allclose(seed["tanh"], np.tanh(z), atol=1e-6)
    np.testing.assert_allclose(seed["tanh_derivative"], 1 - np.tanh(z) ** 2, atol=1e-6)
    assert result["plots"] == ["activations.png"]
    assert os.path.getsize(tmp_path / "activations.png") > 0
    assert os.path.exists(tmp_path / "config.json")
