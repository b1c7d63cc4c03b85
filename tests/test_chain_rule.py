"""The chain rule as a product of local derivatives vs jax.grad, the seed's h, and the chain-rule demo."""

import json
import os

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_experiment
from hypothesis import assume, given, settings

from nnjax.config import parse_config
from nnjax.errors import ConfigError
from nnjax.scratch import chain_rule

names = st.lists(st.sampled_from(sorted(chain_rule.SCALAR_FUNCTIONS)), min_size=1, max_size=4)


@settings(deadline=None, max_examples=25)
@given(chain=names, x=st.floats(-1.5, 1.5, width=32))
def test_product_of_local_derivatives_is_grad_of_composition(chain, x):
    fns = [chain_rule.SCALAR_FUNCTIONS[name] for name in chain]
    expected = jax.grad(chain_rule.compose(fns))(jnp.float32(x))
    assume(np.isfinite(expected))
    trace = chain_rule.chain_derivative(fns, x)
    np.testing.assert_allclose(trace.derivative, expected, rtol=2e-5, atol=1e-6)
    assert trace.values_N1.shape == (len(fns) + 1,) and trace.local_derivatives_N.shape == (len(fns),)
    np.testing.assert_allclose(trace.values_N1[0], x)
    np.testing.assert_allclose(trace.values_N1[-1], chain_rule.compose(fns)(jnp.float32(x)), rtol=1e-6)


def test_local_derivatives_are_those_of_each_function():
    fns = [chain_rule.SCALAR_FUNCTIONS[name] for name in ("square", "sin", "exp")]
    trace = chain_rule.chain_derivative(fns, 0.8)
    u1, u2 = 0.8**2, np.sin(0.8**2)
    np.testing.assert_allclose(trace.local_derivatives_N, [2 * 0.8, np.cos(u1), np.exp(u2)], rtol=1e-6)
    np.testing.assert_allclose(trace.derivative, np.exp(np.sin(0.64)) * np.cos(0.64) * 1.6, rtol=1e-6)


def test_chain_derivative_under_jit_and_vmap():
    fns = [jnp.tanh, jnp.square]
    x_N = jnp.linspace(-2.0, 2.0, 9)
    batched = jax.jit(jax.vmap(lambda v: chain_rule.chain_derivative(fns, v).derivative))(x_N)
    np.testing.assert_allclose(batched, jax.vmap(jax.grad(chain_rule.compose(fns)))(x_N), rtol=1e-6, atol=1e-7)


@settings(deadline=None, max_examples=25)
@given(x=st.floats(-2, 2, width=32), y=st.floats(-2, 2, width=32), z=st.floats(-3, 3, width=32))
def test_hand_partials_of_h_match_autodiff(x, y, z):
    by_hand = chain_rule.h_partials(jnp.float32(x), jnp.float32(y), jnp.float32(z))
    by_autodiff = jax.grad(chain_rule.h, argnums=(0, 1, 2))(jnp.float32(x), jnp.float32(y), jnp.float32(z))
    np.testing.assert_allclose(by_hand, by_autodiff, rtol=1e-5, atol=1e-5)


def test_hand_partials_of_h_match_finite_differences():
    point = np.array([0.5, -0.3, 1.2])

    def h64(v):
        return np.exp(v[0] ** 2 + v[1] ** 2) * np.sin(v[2])

    step = 1e-6
    central = [(h64(point + step * e) - h64(point - step * e)) / (2 * step) for e in np.eye(3)]
    np.testing.assert_allclose(chain_rule.h_partials(*point), central, rtol=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least one function"):
        chain_rule.compose([])
    with pytest.raises(ValueError, match="x must be a scalar"):
        chain_rule.chain_derivative([jnp.sin], jnp.ones(3))


def test_demo_config_errors_name_the_flag():
    from experiments.chain_rule import Config

    with pytest.raises(ConfigError, match="--chain must be"):
        parse_config(Config, ["--chain", "sin,nope"])
    with pytest.raises(ConfigError, match="--point must be three"):
        parse_config(Config, ["--point", "1,2"])


def test_chain_rule_demo(tmp_path):
    done = run_experiment(
        "experiments.chain_rule", "--workdir", str(tmp_path), "--point", "0.4,0.2,-0.7",
        "--chain", "sin,exp", "--chain-at", "0.3", "--num-points", "11",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    x, y, z = 0.4, 0.2, -0.7
    e = np.exp(x**2 + y**2)
    expected = [2 * x * e * np.sin(z), 2 * y * e * np.sin(z), e * np.cos(z)]
    np.testing.assert_allclose(result["partials_by_hand"], expected, atol=2e-6)
    np.testing.assert_allclose(result["partials_by_autodiff"], expected, atol=2e-6)
    assert result["partials_max_abs_difference"] < 1e-5
    chain = result["chain"]
    assert chain["functions"] == ["sin", "exp"]
    np.testing.assert_allclose(chain["local_derivatives"], [np.cos(0.3), np.exp(np.sin(0.3))], atol=2e-6)
    np.testing.assert_allclose(chain["product_of_local_derivatives"], np.cos(0.3) * np.exp(np.sin(0.3)), atol=2e-6)
    np.testing.assert_allclose(chain["autodiff"], chain["product_of_local_derivatives"], atol=2e-6)
    assert chain["max_abs_difference_on_grid"] < 1e-5
    assert os.path.getsize(tmp_path / "chain_rule.png") > 0
