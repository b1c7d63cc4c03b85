"""Hand-written backprop against autodiff, BackpropMLP against flax, and the scratch demos end to end."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import backprop_digits, neurons, training_loop, xor_backprop
from nnjax import cli
from nnjax.models import MLP, BackpropMLP
from nnjax.models.mlp import mlp_layers
from nnjax.scratch import backprop
from nnjax.scratch.descent import minimize

REFERENCE_ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01),
    "elu": jax.nn.elu,
    "linear": lambda z: z,
}


def reference_forward(params, x, hidden, output):
    """Forward pass written independently of nnjax.scratch, differentiated by jax.grad as the oracle."""
    acts = [hidden] * (len(params) - 1) + [output]
    for layer, name in zip(params, acts):
        x = REFERENCE_ACTIVATIONS[name](x @ layer["w"] + layer["b"])
    return x


def reference_loss(params, x, y, loss, hidden):
    if loss == "softmax_ce":
        logits = reference_forward(params, x, hidden, "linear")
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    out = reference_forward(params, x, hidden, "sigmoid")
    if loss == "mse":
        return jnp.mean((out - y) ** 2)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(reference_forward(params, x, hidden, "linear"), y))


def random_problem(seed, sizes, batch, loss):
    kx, ky, kp = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (batch, sizes[0]))
    if loss == "softmax_ce":
        y = jax.random.randint(ky, (batch,), 0, sizes[-1])
    elif loss == "bce":
        y = jax.random.bernoulli(ky, 0.5, (batch, sizes[-1])).astype(jnp.float32)
    else:
        y = jax.random.uniform(ky, (batch, sizes[-1]))
    return backprop.init_mlp(kp, sizes, scale=1.0), x, y


@settings(deadline=None, max_examples=12)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    batch=st.integers(1, 5),
    loss=st.sampled_from(backprop.LOSSES),
    hidden=st.sampled_from(["sigmoid", "tanh", "relu", "leaky_relu", "elu"]),
    seed=st.integers(0, 2**16),
)
def test_hand_written_gradients_equal_autodiff(sizes, batch, loss, hidden, seed):
    if loss == "softmax_ce" and sizes[-1] < 2:
        sizes = [*sizes[:-1], 2]
    params, x, y = random_problem(seed, sizes, batch, loss)

    @jax.jit
    def both(params, x, y):
        return backprop.loss_and_grads(params, x, y, loss, hidden), jax.value_and_grad(reference_loss)(params, x, y, loss, hidden)

    (value, grads), (ref_value, ref_grads) = both(params, x, y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads, ref_grads, atol=1e-5, rtol=1e-5)


@settings(deadline=None, max_examples=8)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_custom_vjp_runs_the_manual_backward_and_matches_autodiff(sizes, batch, seed):
    params, x, _ = random_problem(seed, sizes, batch, "mse")
    g_out = jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, sizes[-1]))

    def pullback(forward):
        return jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x) * g_out), argnums=(0, 1)))(params, x)

    manual = pullback(lambda p, x: backprop.apply(p, x, "tanh", "sigmoid"))
    auto = pullback(lambda p, x: reference_forward(p, x, "tanh", "sigmoid"))
    chex.assert_trees_all_close(manual, auto, atol=1e-5, rtol=1e-5)


def test_manual_backward_is_what_jax_grad_calls():
    params, x, _ = random_problem(0, (3, 4, 2), 5, "mse")
    g_out = jnp.ones((5, 2))
    _, cache = backprop.forward(params, x, "sigmoid", "linear")
    expected, _ = backprop.backward(params, cache, g_out, "sigmoid", "linear")
    got = jax.grad(lambda p: jnp.sum(backprop.apply(p, x, "sigmoid", "linear")))(params)
    chex.assert_trees_all_equal(got, expected)


class BackpropMLPTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_equals_flax_mlp_with_the_same_weights(self):
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 2, 1))
        y = jnp.array([0, 1, 2, 0, 1, 2])
        flax_mlp = MLP(features=(5, 3), activation=jax.nn.relu)
        flax_params = flax_mlp.init(jax.random.PRNGKey(1), x)["params"]
        scratch_params = {"layers": mlp_layers(flax_params)}
        scratch_mlp = BackpropMLP(features=(5, 3), hidden="relu")
        chex.assert_trees_all_equal_shapes(scratch_mlp.init(jax.random.PRNGKey(1), x)["params"], scratch_params)

        def loss_and_grad(model):
            @self.variant
            def fn(params):
                def loss(params):
                    logits = model.apply({"params": params}, x)
                    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

                return jax.value_and_grad(loss)(params)

            return fn

        flax_loss, flax_grads = loss_and_grad(flax_mlp)(flax_params)
        scratch_loss, scratch_grads = loss_and_grad(scratch_mlp)(scratch_params)
        np.testing.assert_allclose(scratch_loss, flax_loss, rtol=1e-6)
        chex.assert_trees_all_close(scratch_grads["layers"], mlp_layers(flax_grads), atol=1e-6)


def test_mlp_layers_orders_dense_layers_by_index():
    params = {f"dense{i}": {"kernel": jnp.full((2, 2), i), "bias": jnp.full(2, -i)} for i in (1, 0, 2)}
    layers = mlp_layers(params)
    assert [int(layer["w"][0, 0]) for layer in layers] == [0, 1, 2] and [int(layer["b"][0]) for layer in layers] == [0, -1, -2]
    with pytest.raises(ValueError, match="missing \\['dense1'\\]"):
        mlp_layers({"dense0": params["dense0"], "dense2": params["dense2"]})


def test_neuron_is_a_dot_product_plus_bias():
    x, w = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(backprop.neuron(x, w, 1.0), 1 * 0.2 + 2 * 0.3 + 3 * 0.5 + 1, rtol=1e-6)


def test_init_and_forward_shapes():
    params = backprop.init_mlp(jax.random.PRNGKey(0), (784, 128, 64, 10))
    chex.assert_shape([layer["w"] for layer in params], [(784, 128), (128, 64), (64, 10)])
    out, cache = backprop.forward(params, jnp.zeros((3, 784)))
    chex.assert_shape(out, (3, 10))
    chex.assert_shape([a for a, _ in cache], [(3, 784), (3, 128), (3, 64)])
    assert backprop.num_params(params) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: backprop.init_mlp(jax.random.PRNGKey(0), (3,)), "at least two positive widths"),
        (lambda: backprop.init_mlp(jax.random.PRNGKey(0), (3, 0, 1)), "at least two positive widths"),
        (lambda: backprop.forward(backprop.init_mlp(jax.random.PRNGKey(0), (3, 2)), jnp.zeros((4, 5))), r"x must be \[batch, 3\]"),
        (lambda: backprop.forward(backprop.init_mlp(jax.random.PRNGKey(0), (3, 2)), jnp.zeros((4, 3)), "swish"), "activation must be one of"),
        (lambda: backprop.loss_and_grads(backprop.init_mlp(jax.random.PRNGKey(0), (3, 2)), jnp.zeros((4, 3)), jnp.zeros((4, 2)), "hinge"), "loss must be one of"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_minimize_matches_closed_form_gradient_descent():
    lr, x0, steps = 0.1, jnp.array([3.0, -2.0]), 20
    result = minimize(jax.value_and_grad(lambda x: jnp.sum(x**2)), x0, optax.sgd(lr), steps, keep_path=True)
    factors = (1 - 2 * lr) ** jnp.arange(steps + 1)
    np.testing.assert_allclose(result.path, factors[:, None] * x0, rtol=1e-5)
    np.testing.assert_allclose(result.loss_T, jnp.sum(result.path[:-1] ** 2, axis=1), rtol=1e-5)
    assert result.params.shape == (2,)


def test_minimize_steps_through_batches_in_order():
    batches = jnp.arange(5.0)[:, None]
    result = minimize(jax.value_and_grad(lambda p, b: jnp.sum(p * b)), jnp.zeros(1), optax.sgd(1.0), batches=batches, keep_path=True)
    np.testing.assert_allclose(result.path[:, 0], -jnp.cumsum(jnp.concatenate([jnp.zeros(1), batches[:, 0]])))
    with pytest.raises(ValueError, match="does not match the 5 batches"):
        minimize(jax.value_and_grad(lambda p, b: jnp.sum(p * b)), jnp.zeros(1), optax.sgd(1.0), steps=3, batches=batches)
    with pytest.raises(ValueError, match="one leading step axis"):
        minimize(lambda p, b: (0.0, p), jnp.zeros(1), optax.sgd(1.0), batches={"a": jnp.zeros(2), "b": jnp.zeros(3)})


def run_demo(module, capsys, *argv):
    assert cli.run(module.main, module.Config, list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_xor_demo_learns_xor_with_manual_backprop(tmp_path, capsys):
    result = run_demo(xor_backprop, capsys, "--workdir", str(tmp_path))
    assert result["accuracy"] == 1.0
    assert [o > 0.5 for o in result["outputs"]] == [False, True, True, False]
    assert result["max_grad_error_vs_autodiff"] < 1e-5
    assert result["final_loss"] < result["initial_loss"]
    assert (tmp_path / "xor_loss.png").stat().st_size > 0


def test_neurons_demo_reproduces_the_slide_examples(tmp_path, capsys):
    result = run_demo(neurons, capsys, "--workdir", str(tmp_path))
    assert result["neuron_output"] == pytest.approx(3.3)
    assert result["simple_nn_params"] == 3 * 5 + 5 + 5 * 2 + 2
    assert result["simple_nn_flax_vs_scratch_max_diff"] < 1e-6
    assert all(0 < v < 1 for v in result["forward_003_3"])
    assert result["mlp_784_128_64_10_activation_shapes"] == [[1, 784], [1, 128], [1, 64], [1, 10]]


def test_training_loop_demo_reduces_held_out_error(tmp_path, capsys):
    result = run_demo(training_loop, capsys, "--workdir", str(tmp_path), "--learning-rate", "0.05")
    assert result["test_mse_after"] < 0.5 * result["test_mse_before"]
    assert result["noise_floor_mse"] == pytest.approx(0.01)
    assert (tmp_path / "training_loss.png").exists()


def test_backprop_digits_trains_through_the_trainer(tmp_path, capsys):
    result = run_demo(backprop_digits, capsys, "--workdir", str(tmp_path), "--epochs", "3", "--log-every-steps", "100")
    assert result["max_grad_error_vs_autodiff"] < 1e-5
    assert result["test_accuracy"] > 0.5
    assert (tmp_path / "learning_curves.png").exists()


def test_demo_config_errors_are_one_line(capsys):
    assert cli.run(xor_backprop.main, xor_backprop.Config, ["--iterations", "0"]) == 2
    assert capsys.readouterr().err.strip() == "nnjax: error: --iterations must be >= 1, got 0"
