"""Losses vs optax and closed forms, on extreme inputs; boundary weights; multitask weighting; the demo."""

import json
import os

import chex
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_experiment
from hypothesis import given, settings
from scipy.optimize import minimize_scalar

from nnjax import losses
from nnjax.config import parse_config
from nnjax.errors import ConfigError
from nnjax.scratch import loss_landscapes as landscapes

N = 12
probs_with_ends = hnp.arrays(np.float32, (N,), elements=st.one_of(st.floats(0, 1, width=32), st.sampled_from([0.0, 1.0])))
interior_probs = hnp.arrays(np.float32, (N,), elements=st.floats(2**-10, 1 - 2**-10, width=32))
targets01 = hnp.arrays(np.float32, (N,), elements=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1, width=32)))
extreme_logits = hnp.arrays(
    np.float32, (N,), elements=st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([0.0, 1e4, -1e4]))
)
residual_pairs = hnp.arrays(np.float32, (2, N), elements=st.floats(-10, 10, width=32))
SETTINGS = settings(deadline=None, max_examples=25)


def _finite_nonnegative(values):
    values = np.asarray(values)
    assert np.all(np.isfinite(values)) and np.all(values >= 0), values


# --- binary cross-entropy ----------------------------------------------------------------------------


@jax.jit
def _clipped_bce(p, y):
    return losses.binary_cross_entropy(p, y, reduction="none"), jax.grad(losses.binary_cross_entropy)(p, y)


@SETTINGS
@given(p=probs_with_ends, y=targets01)
def test_clipped_bce_and_its_gradient_are_finite_at_0_and_1(p, y):
    values, grads = _clipped_bce(jnp.asarray(p), jnp.asarray(y))
    _finite_nonnegative(values)
    assert np.all(np.isfinite(grads))


def test_seed_eps_of_1e_minus_15_stays_finite_in_float32():
    p, y = np.array([0.0, 1.0, 1.0, 0.0], np.float32), np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    values = np.asarray(losses.binary_cross_entropy(p, y, eps=1e-15, reduction="none"))
    _finite_nonnegative(values)
    assert values[0] == values[1] > 10 and values[2] == values[3] < 1e-6


@jax.jit
def _bce_probs_vs_optax(p, y):
    expected = optax.sigmoid_binary_cross_entropy(jnp.log(p) - jnp.log1p(-p), y)
    return losses.binary_cross_entropy(p, y, reduction="none"), losses.binary_cross_entropy(p, y), expected


@SETTINGS
@given(p=interior_probs, y=targets01)
def test_bce_on_probabilities_equals_optax_on_logits(p, y):
    values, mean, expected = _bce_probs_vs_optax(jnp.asarray(p), jnp.asarray(y))
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, np.mean(expected), rtol=1e-4)


@jax.jit
def _bce_logits_vs_optax(x, y):
    values = losses.binary_cross_entropy_with_logits(x, y, reduction="none")
    grads = jax.grad(losses.binary_cross_entropy_with_logits)(x, y)
    return values, optax.sigmoid_binary_cross_entropy(x, y), grads


@SETTINGS
@given(x=extreme_logits, y=targets01)
def test_bce_with_logits_is_stable_and_equals_optax(x, y):
    values, expected, grads = _bce_logits_vs_optax(jnp.asarray(x), jnp.asarray(y))
    _finite_nonnegative(values)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(grads))


# --- categorical cross-entropy -----------------------------------------------------------------------


@jax.jit
def _categorical_vs_optax(z, t):
    t = t / jnp.maximum(t.sum(axis=-1, keepdims=True), 1e-6)
    return (
        losses.categorical_cross_entropy_with_logits(z, t, reduction="none"),
        optax.softmax_cross_entropy(z, t),
        losses.categorical_cross_entropy(jax.nn.softmax(z), t, reduction="none"),
    )


@SETTINGS
@given(z=hnp.arrays(np.float32, (4, 5), elements=st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([1e4, -1e4]))),
       t=hnp.arrays(np.float32, (4, 5), elements=st.floats(0, 1, width=32)))
def test_categorical_ce_with_logits_is_stable_and_equals_optax(z, t):
    by_logits, expected, by_probs = _categorical_vs_optax(jnp.asarray(z), jnp.asarray(t))
    chex.assert_shape(by_logits, (4,))
    _finite_nonnegative(by_logits)
    np.testing.assert_allclose(by_logits, expected, rtol=1e-6, atol=1e-5)
    _finite_nonnegative(by_probs)


@jax.jit
def _categorical_forms(z, labels):
    t = jax.nn.one_hot(labels, z.shape[-1])
    return (
        losses.categorical_cross_entropy_with_logits(z, t, reduction="none"),
        losses.categorical_cross_entropy(jax.nn.softmax(z), t, reduction="none"),
        losses.softmax_cross_entropy(z, labels),
    )


@SETTINGS
@given(z=hnp.arrays(np.float32, (4, 5), elements=st.floats(-5, 5, width=32)), labels=hnp.arrays(np.int32, (4,), elements=st.integers(0, 4)))
def test_categorical_ce_on_probabilities_matches_logits_form(z, labels):
    by_logits, by_probs, integer_labels = _categorical_forms(jnp.asarray(z), jnp.asarray(labels))
    np.testing.assert_allclose(by_probs, by_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_logits, integer_labels, rtol=1e-5, atol=1e-6)


def test_categorical_ce_gradient_finite_at_zero_probability():
    p, t = jnp.array([[1.0, 0.0, 0.0]]), jnp.array([[0.0, 1.0, 0.0]])
    value, grads = jax.jit(jax.value_and_grad(losses.categorical_cross_entropy))(p, t)
    _finite_nonnegative(value)
    assert np.all(np.isfinite(grads))


# --- regression --------------------------------------------------------------------------------------


@jax.jit
def _mse_forms(pred, y):
    pred_3x4, y_3x4 = pred.reshape(3, 4), y.reshape(3, 4)
    return {
        "mse": losses.mse(pred, y),
        "half": losses.half_mse(pred, y),
        "mse_3x4": losses.mse(pred_3x4, y_3x4),
        "half_3x4": losses.half_mse(pred_3x4, y_3x4),
        "half_grad": jax.grad(losses.half_mse)(pred, y),
    }


@SETTINGS
@given(pair=residual_pairs)
def test_mse_forms_relate_by_the_factor_two(pair):
    out = _mse_forms(jnp.asarray(pair[0]), jnp.asarray(pair[1]))
    # atol: squares below float32's smallest normal (1.2e-38) flush to 0 on XLA:CPU; float64 keeps them.
    np.testing.assert_allclose(out["mse"], np.mean((pair[0].astype(np.float64) - pair[1]) ** 2), rtol=1e-5,
                               atol=1e-37)
    np.testing.assert_allclose(out["mse"], 2 * out["half"], rtol=1e-6)
    np.testing.assert_allclose(out["half_3x4"], 4 * out["mse_3x4"] / 2, rtol=1e-6)
    np.testing.assert_allclose(out["half_grad"], (pair[0] - pair[1]) / N, rtol=1e-5, atol=1e-6)


@jax.jit
def _huber_checks(pred, y, delta):
    return (
        losses.huber(pred, y, delta, reduction="none"),
        optax.huber_loss(pred, y, delta=delta),
        losses.mse(pred, y, reduction="none"),
        jax.grad(losses.huber)(pred, y, delta, reduction="sum"),
    )


@SETTINGS
@given(pair=residual_pairs, delta=st.floats(0.1, 5.0))
def test_huber_is_half_mse_inside_delta_and_linear_outside(pair, delta):
    values, expected, squared, grads = _huber_checks(jnp.asarray(pair[0]), jnp.asarray(pair[1]), delta)
    values, squared, grads = np.asarray(values), np.asarray(squared), np.asarray(grads)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    r = np.asarray(pair[0] - pair[1])
    inside = np.abs(r) <= np.float32(delta)
    np.testing.assert_allclose(values[inside], squared[inside] / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[~inside], np.float32(delta) * np.sign(r[~inside]), rtol=1e-6)
    np.testing.assert_allclose(grads[inside], r[inside], rtol=1e-5, atol=1e-6)


@jax.jit
def _penalties(params):
    optax_half = sum(jnp.sum(optax.l2_loss(leaf)) for leaf in jax.tree.leaves(params))
    return {
        "l1": losses.l1_penalty(params),
        "l2": losses.l2_penalty(params),
        "optax_half": optax_half,
        "l1_grad": jax.grad(losses.l1_penalty)(params),
        "l2_grad": jax.grad(losses.l2_penalty)(params),
    }


def test_penalties_over_a_pytree():
    rng = np.random.default_rng(0)
    params = {"dense": {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}, "out": (rng.standard_normal(4),)}
    params = jax.tree.map(lambda leaf: leaf.astype(np.float32), params)
    out = jax.device_get(_penalties(params))
    leaves = [leaf.astype(np.float64) for leaf in jax.tree.leaves(params)]
    np.testing.assert_allclose(out["l1"], sum(np.abs(leaf).sum() for leaf in leaves), rtol=1e-6)
    np.testing.assert_allclose(out["l2"], sum(np.square(leaf).sum() for leaf in leaves), rtol=1e-6)
    np.testing.assert_allclose(out["l2"], 2 * out["optax_half"], rtol=1e-6)
    chex.assert_trees_all_close(out["l2_grad"], jax.tree.map(lambda w: 2 * w, params), rtol=1e-6)
    chex.assert_trees_all_close(out["l1_grad"], jax.tree.map(np.sign, params))
    assert float(losses.l1_penalty({})) == 0.0 and float(losses.l2_penalty([])) == 0.0


# --- multitask uncertainty weighting -----------------------------------------------------------------


@jax.jit
def _multitask_around_optimum(task_losses, shift):
    optimum = jnp.log(task_losses)
    return {
        "at_optimum": losses.multitask_uncertainty_loss(task_losses, optimum),
        "closed_form": jnp.sum(1 + optimum),
        "grad_at_optimum": jax.grad(losses.multitask_uncertainty_loss, argnums=1)(task_losses, optimum),
        "shifted": losses.multitask_uncertainty_loss(task_losses, optimum + shift),
    }


@SETTINGS
@given(task_losses=hnp.arrays(np.float32, (3,), elements=st.floats(2**-7, 50, width=32)),
       shift=hnp.arrays(np.float32, (3,), elements=st.floats(-2, 2, width=32)))
def test_multitask_minimum_is_at_log_losses(task_losses, shift):
    out = _multitask_around_optimum(jnp.asarray(task_losses), jnp.asarray(shift))
    np.testing.assert_allclose(out["at_optimum"], out["closed_form"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["grad_at_optimum"], 0.0, atol=1e-5)
    assert out["shifted"] >= out["at_optimum"] - 1e-5


def test_minimising_log_vars_with_adam_converges_to_log_losses():
    task_losses = np.array([2.0, 0.5, 0.1, 7.0], np.float32)
    fit = landscapes.fit_log_vars(jnp.asarray(task_losses), 0.1, 300)
    np.testing.assert_allclose(fit["log_vars"], np.log(task_losses), atol=1e-3)
    assert fit["initial_loss"] == pytest.approx(task_losses.sum())  # s = 0: every weight is 1
    assert fit["final_loss"] == pytest.approx(np.sum(1 + np.log(task_losses)), abs=1e-5)


# --- loss landscapes (seeds 003·7-8) ----------------------------------------------------------------


def test_constant_prediction_losses_match_numpy_and_stay_finite_at_0_and_1():
    p_P, y_Y, eps = np.linspace(0.0, 1.0, 11), np.array([0.0, 1.0, 1.0, 0.0]), 1e-7
    curves = landscapes.constant_prediction_losses(jnp.asarray(p_P, jnp.float32), jnp.asarray(y_Y, jnp.float32), eps)
    lo = 2.0**-23  # float32 rounds 1 - 1e-7 to 1 - 2^-23, and both ends clip alike (losses._clip_probs)
    clipped = np.clip(p_P, lo, 1 - lo)[:, None]
    np.testing.assert_allclose(curves["MSE"], np.mean((p_P[:, None] - y_Y) ** 2, axis=1), rtol=1e-6)
    want_ce = -np.mean(y_Y * np.log(clipped) + (1 - y_Y) * np.log(1 - clipped), axis=1)
    np.testing.assert_allclose(curves["Cross-entropy"], want_ce, rtol=1e-5)
    assert np.isfinite(curves["Cross-entropy"]).all()


def test_regularized_losses_and_their_closed_form_minimizers():
    x_N, y_N = landscapes.noisy_line(jax.random.key(0), 2.0)
    x, y = np.asarray(x_N, np.float64), np.asarray(y_N, np.float64)
    assert x_N.shape == (100,) and x[0] == 0.0 and x[-1] == 10.0
    assert abs(np.polyfit(x, y, 1)[0] - 2.0) < 0.3  # a line of slope 2 under the noise
    w_W, lam = np.linspace(-3.0, 5.0, 81), 0.5
    curves = landscapes.regularized_losses(x_N, y_N, jnp.asarray(w_W, jnp.float32), lam)
    assert set(curves) == set(landscapes.REGULARIZERS)
    penalties = {"No regularization": lambda w: 0 * w, "L1": lambda w: lam * np.abs(w), "L2": lambda w: lam * w**2}
    minimizers = landscapes.regularized_minimizers(x_N, y_N, lam)
    for name, penalty in penalties.items():
        def loss(w, penalty=penalty):
            return np.mean((x * w - y) ** 2) + penalty(w)

        np.testing.assert_allclose(curves[name], [loss(w) for w in w_W], rtol=1e-5)
        found = minimize_scalar(loss, bounds=(-3.0, 5.0), method="bounded", options={"xatol": 1e-9})
        assert float(minimizers[name]) == pytest.approx(found.x, abs=1e-5), name
    with pytest.raises(ValueError, match="num_points"):
        landscapes.noisy_line(jax.random.key(0), 1.0, num_points=1)


# --- boundary weights and boundary-weighted BCE ------------------------------------------------------


def _boundary_oracle(mask_HxW):
    """Brute force: a pixel is on the boundary when its in-image 3×3 neighbourhood holds both classes."""
    h, w = mask_HxW.shape
    out = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            window = mask_HxW[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            out[i, j] = window.min() != window.max()
    return out


_boundary_weights = jax.jit(losses.boundary_weights, static_argnames=("window",))


@SETTINGS
@given(mask=hnp.arrays(np.int32, (6, 7), elements=st.integers(0, 1)), boundary_weight=st.floats(0, 10))
def test_boundary_weights_match_brute_force(mask, boundary_weight):
    weights = _boundary_weights(jnp.asarray(mask), jnp.float32(boundary_weight))
    np.testing.assert_allclose(weights, 1 + np.float32(boundary_weight) * _boundary_oracle(mask), rtol=1e-6)


@SETTINGS
@given(top=st.integers(0, 8), left=st.integers(0, 8), size=st.integers(3, 8))
def test_boundary_weights_on_a_square(top, left, size):
    mask = np.zeros((16, 16), np.float32)
    mask[top:top + size, left:left + size] = 1
    weights = np.asarray(_boundary_weights(jnp.asarray(mask), jnp.float32(4.0)))
    assert np.all(weights >= 1)
    rows, cols = np.indices(mask.shape)
    # Chebyshev distance outside the square, and depth inside it (0 on its edge pixels).
    outside = np.maximum(np.maximum(top - rows, rows - (top + size - 1)), np.maximum(left - cols, cols - (left + size - 1)))
    inside_depth = np.minimum.reduce([rows - top, top + size - 1 - rows, cols - left, left + size - 1 - cols])
    on_image_border = (rows == 0) | (rows == 15) | (cols == 0) | (cols == 15)
    edge = (mask == 1) & (inside_depth == 0) & ~on_image_border
    ring = outside == 1
    far = (outside >= 2) | ((mask == 1) & (inside_depth >= 1))
    assert np.all(weights[edge] == 5.0) and np.all(weights[ring] == 5.0)
    np.testing.assert_array_equal(weights[far], 1.0)


def test_boundary_weights_batch_and_uniform_masks():
    masks = np.zeros((3, 8, 8), np.float32)
    masks[0, 2:6, 2:6] = 1
    masks[2] = 1
    batched = np.asarray(_boundary_weights(jnp.asarray(masks), 4.0))
    np.testing.assert_array_equal(batched[0], 1 + 4.0 * _boundary_oracle(masks[0]))
    np.testing.assert_array_equal(batched[1:], 1.0)


def _square_case():
    mask = np.zeros((2, 10, 10), np.float32)
    mask[:, 3:7, 2:8] = 1
    logits = 3 * np.random.default_rng(1).standard_normal(mask.shape).astype(np.float32)
    return mask, logits


@jax.jit
def _weighted_bce_forms(logits, mask):
    probs = jax.nn.sigmoid(logits)
    return {
        "probs": probs,
        "weights": losses.boundary_weights(mask, boundary_weight=2.0),
        "sum": losses.boundary_weighted_bce(probs, mask, boundary_weight=2.0, reduction="sum"),
        "mean": losses.boundary_weighted_bce(probs, mask, boundary_weight=2.0),
        "by_logits": losses.boundary_weighted_bce_with_logits(logits, mask, boundary_weight=2.0, reduction="none"),
        "optax": optax.sigmoid_binary_cross_entropy(logits, mask),
        "uniform": losses.boundary_weighted_bce_with_logits(logits, mask, weights=jnp.ones_like(mask)),
        "plain": losses.binary_cross_entropy_with_logits(logits, mask),
    }


def test_boundary_weighted_bce_normalisations():
    mask, logits = _square_case()
    out = jax.device_get(_weighted_bce_forms(logits, mask))
    w = out["weights"].astype(np.float64)
    p64, y64 = out["probs"].astype(np.float64), mask.astype(np.float64)
    seed_formula = -np.sum(w * (y64 * np.log(p64) + (1 - y64) * np.log(1 - p64)))
    np.testing.assert_allclose(out["sum"], seed_formula, rtol=1e-4)
    np.testing.assert_allclose(out["mean"], seed_formula / w.sum(), rtol=1e-4)
    np.testing.assert_allclose(out["by_logits"], w * out["optax"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["uniform"], out["plain"], rtol=1e-6)


@jax.jit
def _weighted_bce_extremes(logits, mask):
    hard = (logits > 0).astype(jnp.float32)
    return (
        losses.boundary_weighted_bce_with_logits(logits, mask, reduction="none"),
        losses.boundary_weighted_bce(hard, mask, reduction="none"),
        jax.grad(losses.boundary_weighted_bce)(hard, mask),
    )


def test_boundary_weighted_bce_extremes_are_finite():
    mask, _ = _square_case()
    extreme = np.where(np.random.default_rng(2).random(mask.shape) < 0.5, 1e4, -1e4).astype(np.float32)
    by_logits, by_probs, grads = _weighted_bce_extremes(extreme, mask)
    _finite_nonnegative(by_logits)
    _finite_nonnegative(by_probs)
    assert np.all(np.isfinite(grads))


# --- argument errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.mse(jnp.ones(3), jnp.ones(4)), "predictions and targets must have the same shape"),
        (lambda: losses.mse(jnp.ones(3), jnp.ones(3), reduction="avg"), "reduction must be one of mean, sum, none"),
        (lambda: losses.binary_cross_entropy(jnp.ones(3), jnp.ones(3), eps=0.0), "eps must be in"),
        (lambda: losses.huber(jnp.ones(3), jnp.ones(3), delta=0.0), "delta must be > 0"),
        (lambda: losses.multitask_uncertainty_loss(jnp.ones(3), jnp.zeros(2)), "losses and log_vars must both"),
        (lambda: losses.boundary_weights(jnp.ones(5)), r"mask must have shape \[..., H, W\]"),
        (lambda: losses.boundary_weights(jnp.ones((5, 5)), window=4), "window must be an odd size"),
        (lambda: losses.boundary_weighted_bce(jnp.ones((4, 4)), jnp.ones((4, 4)), weights=jnp.ones(4)), "weights must have"),
    ],
)
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- the demo ----------------------------------------------------------------------------------------


def test_loss_functions_demo(tmp_path):
    done = run_experiment("experiments.loss_functions", "--workdir", str(tmp_path), "--num-points", "21", "--multitask-steps", "200")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    y, p = np.array([0.0, 1, 1]), np.array([0.1, 0.9, 0.8])
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert result["seed_001_3"] == pytest.approx(
        {"bce": bce, "mse_half_form": np.sum((p - y) ** 2) / 6, "mse_mean_form": np.mean((p - y) ** 2)}, abs=2e-6
    )
    y, p = np.array([1.0, 0, 1, 1]), np.array([0.9, 0.1, 0.8, 0.95])
    assert result["seed_004_6"] == pytest.approx(
        {"mse": np.mean((y - p) ** 2), "bce": -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))}, abs=2e-6
    )
    for name in ("MSE", "Cross-entropy"):
        curve = result["comparison"][name]
        assert curve["all_finite"] and curve["argmin_p"] == pytest.approx(0.5)
        assert curve["at_p0"] == pytest.approx(curve["at_p1"])
    assert result["comparison"]["MSE"]["at_p0"] == pytest.approx(0.5)
    assert result["comparison"]["Cross-entropy"]["at_p_half"] == pytest.approx(np.log(2), abs=1e-6)
    spacing = result["regularization_grid_spacing"]
    for curve in result["regularization"].values():
        assert abs(curve["argmin_weight"] - curve["closed_form_argmin"]) <= spacing
    reg = result["regularization"]
    assert reg["L2"]["closed_form_argmin"] < reg["L1"]["closed_form_argmin"] < reg["No regularization"]["closed_form_argmin"]
    multitask = result["multitask"]
    np.testing.assert_allclose(multitask["learned_log_vars"], np.log(multitask["task_losses"]), atol=1e-3)
    assert multitask["final_loss"] == pytest.approx(multitask["closed_form_min_loss"], abs=1e-4)
    for name in result["plots"]:
        assert os.path.getsize(tmp_path / name) > 0


@pytest.mark.parametrize(
    "args, message",
    [(["--multitask-losses", "1,-2"], "--multitask-losses must be"), (["--eps", "0.7"], "--eps must be in"),
     (["--multitask-steps", "0"], "--multitask-steps must be >= 1")],
)
def test_demo_config_errors_name_the_flag(args, message):
    from experiments.loss_functions import Config

    with pytest.raises(ConfigError, match=message):
        parse_config(Config, args)
