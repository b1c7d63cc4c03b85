"""TimeSeriesTransformer (seed 000·10): shapes, padding, causality, the last-valid-step forecaster, the experiment."""

import functools
import importlib.util
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import timeseries_transformer
from nnjax import cli
from nnjax.data.timeseries import noisy_sine
from nnjax.models.forecast import TimeSeriesForecaster, TimeSeriesTransformer, last_valid_step

B, T, F = 3, 6, 2
SMALL = {"hidden": 8, "num_layers": 2, "heads": 2}


@functools.cache
def _variables() -> dict:
    """Random params with the tiny model's shapes, drawn with NumPy so that no init compiles (the
    experiment test below runs the real init). Every model call here is jitted with a mask, so each
    graph compiles once for the whole file."""
    shapes = jax.eval_shape(TimeSeriesTransformer(**SMALL).init, jax.random.PRNGKey(0), jnp.zeros((B, T, F)))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda leaf: jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), leaf.dtype), shapes)


@functools.cache
def _apply(causal: bool = False):
    """jitted ``(x [B, T', F], mask [B, T']) -> [B, T', F]`` of the tiny model."""
    model, variables = TimeSeriesTransformer(**SMALL, causal=causal), _variables()
    return jax.jit(lambda x, mask: model.apply(variables, x, mask))


def _right_padding(lengths, steps: int = T) -> jax.Array:
    return jnp.arange(steps)[None, :] < jnp.asarray(lengths)[:, None]


def _inputs(seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (B, T, F))


ALL_VALID = _right_padding([T] * B)


@pytest.mark.parametrize("causal", [False, True])
def test_output_shapes(causal):
    y = _apply(causal)(_inputs(), _right_padding([T, 3, 1]))
    chex.assert_shape(y, (B, T, F))
    chex.assert_tree_all_finite(y)


@settings(deadline=None, max_examples=10)
@given(
    lengths=st.lists(st.integers(1, T), min_size=B, max_size=B),
    seed=st.integers(0, 2**16),
    causal=st.booleans(),
)
def test_padded_inputs_do_not_change_valid_outputs(lengths, seed, causal):
    mask = _right_padding(lengths)
    x = _inputs(0)
    noise = 10.0 * jax.random.normal(jax.random.PRNGKey(seed), x.shape)
    x_other = jnp.where(mask[..., None], x, noise)  # only the padded steps differ
    apply = _apply(causal)
    y, y_other = np.asarray(apply(x, mask)), np.asarray(apply(x_other, mask))
    valid = np.asarray(mask)
    np.testing.assert_allclose(y[valid], y_other[valid], rtol=1e-6, atol=1e-6)


def test_padding_changes_outputs_without_a_mask():
    """The check above is not vacuous: unmasked, the attention sees the later steps."""
    x_other = jnp.where(_right_padding([T, 3, 1])[..., None], _inputs(), 5.0)
    y, y_other = (np.asarray(_apply()(x, ALL_VALID)) for x in (_inputs(), x_other))
    assert np.abs(y[1, :3] - y_other[1, :3]).max() > 1e-4


def test_padded_sequence_equals_the_sequence_alone():
    x, length = _inputs(), 4
    y = _apply()(x, _right_padding([T, length, 2]))
    alone = _apply()(x[:, :length], _right_padding([length] * B, length))  # the unpadded prefixes, T = 4
    np.testing.assert_allclose(y[1, :length], alone[1], rtol=1e-5, atol=1e-5)


def _changed_TxT(causal: bool) -> np.ndarray:
    """bool [T (output step), T (input step)]: does output step t of sequence 0 move when input step s does?"""
    apply, x = _apply(causal), _inputs()
    y = np.asarray(apply(x, ALL_VALID))[0]
    moved = [np.abs(np.asarray(apply(x.at[:, s].add(1.0), ALL_VALID))[0] - y).max(axis=-1) > 0 for s in range(T)]
    return np.stack(moved, axis=1)


def test_causal_outputs_ignore_later_inputs():
    future = np.triu(np.ones((T, T), bool), k=1)  # s > t
    changed = _changed_TxT(causal=True)
    assert not changed[future].any()
    assert changed[~future].all()
    assert _changed_TxT(causal=False)[future].all()  # without the causal mask attention looks ahead


def test_forecaster_reads_the_last_valid_step():
    forecast = jax.jit(TimeSeriesForecaster(TimeSeriesTransformer(**SMALL), target=1).apply)
    params = {"params": {"model": _variables()["params"]}}
    x, lengths = _inputs(), [T, 4, 1]
    mask = _right_padding(lengths)
    y = _apply()(x, mask)
    want = jnp.stack([y[b, length - 1, 1] for b, length in enumerate(lengths)])[:, None]
    got = forecast(params, x, mask)
    chex.assert_shape(got, (B, 1))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_last_valid_step_any_mask():
    y = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 1)
    mask = jnp.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)  # a gap; a row with nothing valid -> step 0
    np.testing.assert_array_equal(last_valid_step(y, mask), [[2.0], [4.0]])
    np.testing.assert_array_equal(last_valid_step(y), [[3.0], [7.0]])


def test_dropout_draws_a_new_mask_per_key_when_training():
    model, variables = TimeSeriesTransformer(**SMALL, dropout=0.5), _variables()  # dropout has no params
    train = jax.jit(lambda x, mask, key: model.apply(variables, x, mask, train=True, rngs={"dropout": key}))
    x = _inputs()
    keys = [jax.random.key(k, impl="unsafe_rbg") for k in (1, 2)]  # compiles in half the time of threefry keys
    trained_1, trained_2 = (np.asarray(train(x, ALL_VALID, key)) for key in keys)
    assert not np.allclose(trained_1, trained_2)
    assert not np.allclose(trained_1, _apply()(x, ALL_VALID))


@pytest.mark.parametrize(
    "kwargs, shape, mask_shape, message",
    [
        ({"hidden": 6, "heads": 4}, (B, T, F), None, "hidden must be divisible by heads"),
        ({"num_layers": 0}, (B, T, F), None, "num_layers"),
        ({}, (B, T), None, r"\[B, T, F\]"),
        ({}, (B, T, F), (B, T + 1), r"mask must have shape"),
    ],
)
def test_bad_inputs_raise(kwargs, shape, mask_shape, message):
    model = TimeSeriesTransformer(**{**SMALL, **kwargs})
    mask = None if mask_shape is None else jnp.ones(mask_shape, bool)
    with pytest.raises(ValueError, match=message):
        model.init(jax.random.PRNGKey(0), jnp.zeros(shape), mask)


TINY = ["--series", "sine", "--points", "300", "--epochs", "2", "--hidden", "8", "--heads", "2", "--layers", "1"]


# The keys of lstm_forecast's JSON line (the shared nnjax.tasks.forecasting.run_forecast) that this test reads.
KEYS = {
    "test_loss", "train_examples", "epochs", "steps", "series", "window", "difference", "val_model_rmse",
    "val_naive_rmse", "test_model_rmse", "test_naive_rmse", "test_noise_floor_rmse", "beats_naive",
    "test_windows", "test_time_range", "plots", "workdir",
}


def test_experiment_end_to_end(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli.run(timeseries_transformer.main, timeseries_transformer.Config, [*TINY, "--workdir", workdir]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS <= out.keys()
    series = noisy_sine(300, 0.1, seed=0)
    naive = np.sqrt(np.mean((series[254:299] - series[255:]) ** 2))  # the last 15 % = 45 targets
    np.testing.assert_allclose(out["test_naive_rmse"], naive, atol=1e-4)
    assert out["test_windows"] == 45 and out["train_examples"] == 200
    assert out["series"] == "sine" and out["window"] == 10 and out["epochs"] == 2 and out["steps"] == 2 * (200 // 32)
    assert np.isfinite(out["test_model_rmse"]) and np.isfinite(out["val_model_rmse"])
    for name in out["plots"]:
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_experiment_rejects_bad_flags_and_missing_statsmodels(monkeypatch, capsys):
    run = functools.partial(cli.run, timeseries_transformer.main, timeseries_transformer.Config)
    assert run(["--series", "sine", "--hidden", "10", "--heads", "4"]) == 2
    assert "--hidden must be divisible by --heads" in capsys.readouterr().err
    assert run(["--series", "sine", "--dropout", "1.0"]) == 2
    assert "--dropout" in capsys.readouterr().err
    assert timeseries_transformer.Config().series == "sunspots"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == "statsmodels" else real_find_spec(module, *a)
    )
    assert run([]) == 2
    assert "nnjax data fetch statsmodels_series" in capsys.readouterr().err
