"""Model and layer tests: shapes, and scratch layers against flax's own layers."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.errors import ShapeError
from nnjax.models import MLP, Conv2D, MnistCNN, max_pool_2x2


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (8, 8, 1), (32, 32, 3)])
def test_mnist_cnn_shapes(image_shape):
    x = jnp.zeros((3, *image_shape))
    model = MnistCNN(num_classes=10)
    variables = model.init(jax.random.PRNGKey(0), x)
    h, w, c = image_shape
    params = variables["params"]
    chex.assert_shape(params["conv"]["kernel"], (3, 3, c, 32))
    chex.assert_shape(params["hidden"]["kernel"], (((h - 2) // 2) * ((w - 2) // 2) * 32, 128))
    chex.assert_shape(model.apply(variables, x), (3, 10))


def test_mnist_cnn_rejects_unbatched_images():
    with pytest.raises(ShapeError, match=r"expects images \[batch"):
        MnistCNN().init(jax.random.PRNGKey(0), jnp.zeros((28, 28, 1)))


def test_mlp_shapes_match_seed_architecture():
    x = jnp.zeros((5, 28, 28, 1))
    model = MLP(features=(128, 64, 10))
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    chex.assert_trees_all_equal_shapes(
        params,
        {f"dense{i}": {"kernel": jnp.zeros((a, b)), "bias": jnp.zeros((b,))}
         for i, (a, b) in enumerate([(784, 128), (128, 64), (64, 10)])},
    )
    chex.assert_shape(model.apply({"params": params}, x), (5, 10))


def _value_and_grad(pool, x, weights):
    return jax.value_and_grad(lambda x: jnp.sum(pool(x) * weights))(x)


@settings(max_examples=8, deadline=None)
@given(h=st.integers(2, 11), w=st.integers(2, 11), c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_max_pool_2x2_equals_flax(h, w, c, seed):
    rng = np.random.default_rng(seed)  # numpy draws: a jax.random draw would compile once per shape
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")  # noqa: E731
    chex.assert_trees_all_close(max_pool_2x2(x), flax_pool(x))
    # Continuous inputs have no ties, so the gradients equal flax's select-and-scatter too.
    weights = rng.standard_normal((2, h // 2, w // 2, c)).astype(np.float32)
    ours = jax.jit(_value_and_grad, static_argnums=0)(max_pool_2x2, x, weights)
    theirs = jax.jit(_value_and_grad, static_argnums=0)(flax_pool, x, weights)
    chex.assert_trees_all_close(ours, theirs, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(
    size=st.integers(5, 12),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 2),
    channels=st.integers(1, 3),
    padding=st.sampled_from(["SAME", "VALID"]),
    impl=st.sampled_from(["im2col", "xla"]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_equals_flax_conv(size, kernel, stride, channels, padding, impl, seed):
    rng = np.random.default_rng(seed)  # numpy draws: jax.random inits would compile once per shape
    x = rng.standard_normal((2, size, size + 1, channels)).astype(np.float32)
    ours = Conv2D(5, (kernel, kernel), strides=(stride, stride), padding=padding, impl=impl)
    theirs = nn.Conv(5, (kernel, kernel), strides=(stride, stride), padding=padding)
    shapes = jax.eval_shape(ours.init, jax.random.PRNGKey(0), x)
    chex.assert_trees_all_equal_shapes(shapes, jax.eval_shape(theirs.init, jax.random.PRNGKey(0), x))
    params = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32), shapes)  # non-zero bias too
    value_and_grad = jax.jit(
        lambda module, p: jax.value_and_grad(lambda p: jnp.sum(jnp.sin(module.apply(p, x))))(p), static_argnums=0
    )
    chex.assert_trees_all_close(ours.apply(params, x), theirs.apply(params, x), atol=1e-5)
    chex.assert_trees_all_close(value_and_grad(ours, params), value_and_grad(theirs, params), atol=1e-4)


@pytest.mark.parametrize("padding", ["FULL", -1, (1, 2, 3), ((1, 2), (3,))])
def test_conv2d_rejects_unknown_padding(padding):
    with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID', an int or pairs of ints"):
        Conv2D(4, padding=padding).init(jax.random.PRNGKey(0), np.zeros((1, 5, 5, 1), np.float32))
